// Package fakeworker is a Go implementation of the worker side of the
// goridge jobs protocol, with modes that misbehave in the ways real PHP
// and Python workers do. Pool and end-to-end tests run it either from the
// test binary itself (the TestHelperProcess pattern, see HelperCommand)
// or as the standalone binary in cmd/fakeworker.
//
// The worker reads frames with goridge's own pkg/pipe relay, so every
// pool test also checks that what the supervisor writes is what goridge
// expects.
//
// Modes (see Run): echo, ack, error-frame, always-fail, slow, crash,
// garbage, garbage-boot, bad-crc, stderr-spam, ignore-stop, exit-on-boot,
// ask-stop, die-after, nack-first, hog, env (replies with the values of the
// environment variables named, comma-separated, in the job body, as a JSON
// object), mute (never answers anything), exit-after-boot (answers the
// handshake, then exits 1), exit-idle (answers the handshake, waits
// FAKEWORKER_DELAY and exits 0 without a job), bad-options (replies with two options),
// truncated (sends a reply header announcing more payload than it writes,
// then exits 1), orphan-crash (starts `sleep 30` holding its stdout and
// stderr, then exits mid-job: stdout never reaches EOF), deaf-after-boot
// (closes stdin, answers the handshake and lives on without reading; with
// FAKEWORKER_ONCE_FILE only the first worker does, the others ack),
// crash-after (echoes, but exits 70 on reading job FAKEWORKER_N without
// answering it; with FAKEWORKER_ONCE_FILE only the first worker to get
// that far does). ask-stop exits right after its stop reply, as the
// clients do. leave-stdin (echoes the first job, then starts `sleep 30`
// holding its stdin, waits FAKEWORKER_DELAY without reading and exits 0;
// with FAKEWORKER_ONCE_FILE only the first worker does, the others echo).
// junk-after (echoes each job, then writes a line of text to stdout after
// its reply, as a debug print after the ack would). close-stdout (on a job,
// closes its stdout without answering and lives on, up to a minute).
//
// Environment knobs: FAKEWORKER_DELAY (slow: how long a job takes, a Go
// duration, default 2s; a job whose payload is a Go duration takes that), FAKEWORKER_N (die-after: jobs before exiting,
// default 3; crash-after: the job it crashes in), FAKEWORKER_ONCE_FILE (ask-stop: only the worker that creates
// this file asks to stop, once, so a pool can make progress),
// FAKEWORKER_MB (hog: megabytes to allocate and touch at boot, default 64),
// FAKEWORKER_LOG (every worker appends "<pid>\n" to this file at boot, so
// a test can count starts), FAKEWORKER_BOOT_LOG and FAKEWORKER_BOOT_DELAY
// (every worker appends "begin <unix ns>" to the file, waits the delay
// before answering the handshake, then appends "end <unix ns>": the lines
// tell how many workers were booting at once), FAKEWORKER_BOOT_ONCE_FILE (in any mode: only
// the worker that creates this file starts; later ones exit on boot with
// code 3).
package fakeworker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/frame"
	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
	"github.com/roadrunner-server/goridge/v3/pkg/pipe"
)

// Modes returns every mode Run accepts.
func Modes() []string {
	return []string{
		"echo", "ack", "error-frame", "always-fail", "slow", "crash", "garbage", "garbage-boot",
		"bad-crc", "stderr-spam", "ignore-stop", "exit-on-boot", "ask-stop", "die-after",
		"nack-first", "hog", "env", "mute", "exit-after-boot", "exit-idle", "deaf-after-boot", "bad-options", "truncated",
		"orphan-crash", "crash-after", "leave-stdin", "junk-after", "close-stdout",
	}
}

// ModeEnv names the environment variable the standalone binary reads its
// mode from when it has no argument, and HelperEnv the one that makes a
// test binary's TestHelperProcess act as a fake worker.
const (
	ModeEnv   = "FAKEWORKER_MODE"
	HelperEnv = "FAKEWORKER_HELPER"
)

// AckBody is the reply body of the ack mode: {"type":2,"data":{}}.
const AckBody = `{"type":2,"data":{}}`

// ignoreStopLimit bounds how long an ignore-stop worker lingers, so a
// failed test cannot leave it running forever.
const ignoreStopLimit = 60 * time.Second

// Main runs a fake worker in the given mode on the process's stdin,
// stdout and stderr and returns the process exit code. Use it from a
// test binary:
//
//	func TestHelperProcess(t *testing.T) {
//		if mode := os.Getenv(fakeworker.HelperEnv); mode != "" {
//			os.Exit(fakeworker.Main(mode))
//		}
//	}
func Main(mode string) int {
	if mode == "ignore-stop" {
		signal.Ignore(syscall.SIGTERM, syscall.SIGINT)
	}
	return Run(mode, os.Stdin, os.Stdout, os.Stderr)
}

// HelperCommand returns the command that re-executes the running test
// binary as a fake worker; put HelperEnv=<mode> in the worker's env. The
// test binary needs the TestHelperProcess function shown on Main.
func HelperCommand() []string {
	return []string{os.Args[0], "-test.run=^TestHelperProcess$"}
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// worker is the state of one Run.
type worker struct {
	mode   string
	in     io.Reader
	relay  *pipe.Relay
	out    io.Writer
	errw   *bufio.Writer // buffers errOut
	errOut io.Writer
	jobs   int
	dieN   int
	delay  time.Duration
	hogged []byte
}

// Run is Main with explicit streams. It answers the pid handshake, then
// serves jobs according to mode until it reads a stop frame (exit 0), its
// stdin ends (exit 0) or the mode makes it fail (exit code > 0). An
// unknown mode exits with code 2.
func Run(mode string, in io.Reader, out io.Writer, errOut io.Writer) int {
	w := &worker{
		mode:   mode,
		in:     in,
		relay:  pipe.NewPipeRelay(io.NopCloser(in), nopCloser{out}),
		out:    out,
		errw:   bufio.NewWriter(errOut),
		errOut: errOut,
		dieN:   envInt("FAKEWORKER_N", 3),
		delay:  envDuration("FAKEWORKER_DELAY", 2*time.Second),
	}
	defer w.errw.Flush()
	known := false
	for _, m := range Modes() {
		known = known || m == mode
	}
	if !known {
		w.logf("fakeworker: unknown mode %q", mode)
		return 2
	}
	if path := os.Getenv("FAKEWORKER_LOG"); path != "" {
		if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintf(f, "%d\n", os.Getpid())
			_ = f.Close()
		}
	}
	if path := os.Getenv("FAKEWORKER_BOOT_ONCE_FILE"); path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			w.logf("fakeworker: %s exists, refusing to start", path)
			return 3
		}
		_ = f.Close()
	}
	if path := os.Getenv("FAKEWORKER_BOOT_LOG"); path != "" {
		appendLine(path, fmt.Sprintf("begin %d", time.Now().UnixNano()))
		time.Sleep(envDuration("FAKEWORKER_BOOT_DELAY", 0))
		appendLine(path, fmt.Sprintf("end %d", time.Now().UnixNano()))
	}
	switch mode {
	case "mute":
		_, _ = io.Copy(io.Discard, in)
		time.Sleep(ignoreStopLimit)
		return 0
	case "exit-on-boot":
		w.logf("fakeworker: exiting on boot as asked")
		return 3
	case "garbage-boot":
		fmt.Fprintln(out, "Hello! I am a worker that prints to stdout on boot.")
	case "hog":
		w.hogged = make([]byte, envInt("FAKEWORKER_MB", 64)<<20)
		for i := 0; i < len(w.hogged); i += 4096 {
			w.hogged[i] = 1
		}
	}
	return w.loop()
}

// appendLine appends line and a newline to the file at path, in one
// write (O_APPEND: lines of concurrent workers do not interleave).
func appendLine(path, line string) {
	if f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
		_, _ = f.WriteString(line + "\n")
		_ = f.Close()
	}
}

func (w *worker) logf(format string, args ...any) {
	fmt.Fprintf(w.errw, format+"\n", args...)
	_ = w.errw.Flush()
}

func (w *worker) send(flags byte, opts []uint32, payload []byte) error {
	f := gf.NewFrame()
	f.WriteVersion(f.Header(), gf.Version1)
	f.WriteFlags(f.Header(), flags)
	if len(opts) > 0 {
		f.WriteOptions(f.HeaderPtr(), opts...)
	}
	f.WritePayloadLen(f.Header(), uint32(len(payload)))
	f.WritePayload(payload)
	f.WriteCRC(f.Header())
	return w.relay.Send(f)
}

func (w *worker) reply(ctx, body []byte) error {
	p := make([]byte, 0, len(ctx)+len(body))
	p = append(append(p, ctx...), body...)
	return w.send(0, []uint32{uint32(len(ctx))}, p)
}

func (w *worker) loop() int {
	for {
		fr := gf.NewFrame()
		if err := w.relay.Receive(fr); err != nil {
			if err == io.EOF {
				return 0
			}
			w.logf("fakeworker: receive: %v", err)
			return 1
		}
		h := fr.Header()
		if fr.ReadFlags()&gf.CONTROL != 0 {
			if frame.IsStop(fr.Payload()) {
				if w.mode == "ignore-stop" {
					w.logf("fakeworker: ignoring stop")
					time.Sleep(ignoreStopLimit)
					return 0
				}
				return 0
			}
			if _, err := frame.ParsePid(fr.Payload()); err != nil {
				w.logf("fakeworker: bad control frame: %v", err)
				return 1
			}
			deaf := w.mode == "deaf-after-boot" && w.claimOnce()
			if c, ok := w.in.(io.Closer); ok && deaf {
				// Closed before the reply: the pool's first write
				// finds no reader, while this process lives on.
				_ = c.Close()
			}
			if err := w.send(gf.CONTROL, nil, frame.PidPayload(os.Getpid())); err != nil {
				return 1
			}
			if deaf {
				w.logf("fakeworker: closed stdin right after the handshake")
				time.Sleep(ignoreStopLimit)
				return 0
			}
			if w.mode == "exit-after-boot" {
				w.logf("fakeworker: exiting right after the handshake")
				return 1
			}
			if w.mode == "exit-idle" {
				time.Sleep(w.delay)
				w.logf("fakeworker: exiting while idle after %s", w.delay)
				return 0
			}
			continue
		}
		opts := fr.ReadOptions(h)
		if len(opts) != 1 || int(opts[0]) > len(fr.Payload()) {
			w.logf("fakeworker: job frame with options %v", opts)
			return 1
		}
		pl := frame.Payload{Context: fr.Payload()[:opts[0]], Body: fr.Payload()[opts[0]:]}
		w.jobs++
		if code, done := w.job(pl); done {
			return code
		}
	}
}

// job serves one job. done reports that the worker must exit with code.
func (w *worker) job(pl frame.Payload) (code int, done bool) {
	var err error
	switch w.mode {
	case "echo":
		err = w.reply(pl.Context, pl.Body)
	case "error-frame", "always-fail":
		err = w.send(gf.ERROR, nil, []byte("fakeworker: job failed on purpose"))
	case "slow":
		d := w.delay
		if pd, err := time.ParseDuration(string(pl.Body)); err == nil {
			d = pd
		}
		time.Sleep(d)
		err = w.reply(nil, []byte(AckBody))
	case "crash":
		w.logf("PHP Fatal error: Allowed memory size exhausted (fakeworker crash mode)")
		return 70, true
	case "garbage":
		_, err = fmt.Fprintf(w.out, "debug: handling job %d\n", w.jobs)
	case "orphan-crash":
		cmd := exec.Command("sleep", "30")
		// Only real files: for any other writer os/exec would copy in a
		// goroutine of its own, racing with this worker's own writes.
		if f, ok := w.out.(*os.File); ok {
			cmd.Stdout = f
		}
		if f, ok := w.errOut.(*os.File); ok {
			cmd.Stderr = f
		}
		if err := cmd.Start(); err != nil {
			w.logf("fakeworker: %v", err)
		}
		w.logf("fakeworker: exiting mid-job, leaving a child on my stdout")
		return 71, true
	case "close-stdout":
		if c, ok := w.out.(io.Closer); ok {
			_ = c.Close()
		}
		w.logf("fakeworker: closed stdout mid-job, living on")
		time.Sleep(ignoreStopLimit)
		return 0, true
	case "bad-options":
		err = w.send(0, []uint32{0, 7}, []byte(AckBody))
	case "truncated":
		b := frame.EncodeReply(frame.Payload{Body: []byte(AckBody)})
		_, _ = w.out.Write(b[:len(b)-5])
		w.logf("fakeworker: wrote a short frame")
		return 1, true
	case "bad-crc":
		b := frame.EncodeReply(frame.Payload{Body: []byte(AckBody)})
		b[6] ^= 0xff
		_, err = w.out.Write(b)
	case "stderr-spam":
		for i := range 2000 {
			fmt.Fprintf(w.errw, "spam line %d of job %d: %0100d\n", i, w.jobs, i)
		}
		_ = w.errw.Flush()
		err = w.reply(nil, []byte(AckBody))
	case "ask-stop":
		if w.jobs == 1 && w.claimOnce() {
			// As the PHP and Python clients: no job after asking to stop.
			if err := w.reply([]byte(`{"stop":true}`), nil); err != nil {
				return 1, true
			}
			return 0, true
		}
		err = w.reply(nil, []byte(AckBody))
	case "leave-stdin":
		err = w.reply(pl.Context, pl.Body)
		if err == nil && w.claimOnce() {
			// A child inherits stdin and never reads it; this process
			// stops reading and exits a moment later.
			cmd := exec.Command("sleep", "30")
			if f, ok := w.in.(*os.File); ok {
				cmd.Stdin = f
			}
			if err := cmd.Start(); err != nil {
				w.logf("fakeworker: %v", err)
			}
			time.Sleep(w.delay)
			w.logf("fakeworker: exiting, leaving stdin to a child")
			return 0, true
		}
	case "crash-after":
		if w.jobs == w.dieN && w.claimOnce() {
			w.logf("fakeworker: crashing in job %d", w.jobs)
			return 70, true
		}
		err = w.reply(pl.Context, pl.Body)
	case "junk-after":
		if err = w.reply(pl.Context, pl.Body); err == nil {
			_, err = fmt.Fprintf(w.out, "debug: job %d done\n", w.jobs)
		}
	case "die-after":
		err = w.reply(nil, []byte(AckBody))
		if err == nil && w.jobs >= w.dieN {
			w.logf("fakeworker: exiting after %d jobs", w.jobs)
			return 0, true
		}
	case "nack-first":
		err = w.reply(nil, nackFirst(pl.Context))
	case "env":
		vals := map[string]string{}
		for _, k := range strings.Split(string(pl.Body), ",") {
			vals[k] = os.Getenv(k)
		}
		b, _ := json.Marshal(vals)
		err = w.reply(nil, b)
	default: // ack, ignore-stop, garbage-boot, hog
		err = w.reply(nil, []byte(AckBody))
	}
	if err != nil {
		w.logf("fakeworker: send: %v", err)
		return 1, true
	}
	return 0, false
}

// claimOnce reports whether this worker is the one that asks to stop:
// always when FAKEWORKER_ONCE_FILE is unset, else only the first worker
// to create that file.
func (w *worker) claimOnce() bool {
	path := os.Getenv("FAKEWORKER_ONCE_FILE")
	if path == "" {
		return true
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false
	}
	_ = f.Close()
	return true
}

// nackFirst nacks with requeue when the job's x-attempt header is "1" (or
// missing), and acks any later attempt.
func nackFirst(ctx []byte) []byte {
	var jc frame.JobContext
	_ = json.Unmarshal(ctx, &jc)
	attempt := "1"
	if v := jc.Headers["x-attempt"]; len(v) > 0 {
		attempt = v[0]
	}
	if attempt == "1" {
		return []byte(`{"type":3,"data":{"message":"fakeworker: failing the first attempt","requeue":true}}`)
	}
	return []byte(AckBody)
}

func envInt(key string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(key)); err == nil && n > 0 {
		return n
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil && d >= 0 {
		return d
	}
	return def
}
