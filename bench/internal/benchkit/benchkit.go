// Package benchkit holds what the end-to-end benchmark programs under bench/
// share: starting `supervisor serve` with a generated .rr.yaml and waiting
// for its RPC, reading a process's CPU time and memory from /proc, pushing
// jobs in batches, waiting for acks, and latency percentiles.
//
// It is for the benchmark programs only (Linux: /proc is read directly).
package benchkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// ErrTimeout is returned (wrapped) when a wait ends with its ctx.
var ErrTimeout = errors.New("benchkit: timed out")

// ErrExited is returned when the supervisor exits before it is ready.
var ErrExited = errors.New("benchkit: supervisor exited during start")

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 30 * time.Second

// Proc is a started child process whose exit is watched by a goroutine
// that Stop waits for.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

// StartProc starts cmd and watches its exit. The caller must call Stop.
func StartProc(cmd *exec.Cmd) (*Proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &Proc{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by Stop, which waits for exited
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited and been waited for.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM and waits for the exit, sending SIGKILL after 30s.
// It may be called again after the process exited.
func (p *Proc) Stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// CPU is the process's CPU time so far, all threads summed from
// /proc/PID/task/*/schedstat (0 where /proc has none).
func (p *Proc) CPU() time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", p.cmd.Process.Pid))
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue // the thread ended between the glob and the read
		}
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return time.Duration(ns)
}

// clockTick is the unit of utime and stime in /proc/PID/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const clockTick = 10 * time.Millisecond

// UserSys is the process's CPU time so far split into user and kernel
// time, from /proc/PID/stat (10 ms resolution; zeros where /proc has
// none).
func (p *Proc) UserSys() (user, sys time.Duration) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, 0
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64) // field 14, utime
	k, _ := strconv.ParseInt(f[12], 10, 64) // field 15, stime
	return time.Duration(u) * clockTick, time.Duration(k) * clockTick
}

// MemKB reads the line key (e.g. "VmRSS", "VmHWM") of /proc/PID/status in
// kB; -1 where it cannot.
func (p *Proc) MemKB(key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				return -1
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Config is what StartSupervisor writes into the .rr.yaml.
type Config struct {
	// Bin is the supervisor binary.
	Bin string
	// Dir is where the .rr.yaml is written, as Name+".rr.yaml".
	Dir, Name string
	// Command is the worker command (server.command), run from the
	// current directory.
	Command string
	// Env is server.env (none when empty).
	Env map[string]string
	// Body is the YAML after the rpc, server and logs sections: the
	// broker sections and jobs.
	Body string
	// Ready tells from a jobs stat when the supervisor is ready; nil:
	// as soon as Stat answers.
	Ready func([]consumer.Stat) bool
	// Args are extra arguments of serve (e.g. --cpuprofile FILE).
	Args []string
}

// Supervisor is a running `supervisor serve` and an RPC client to it.
type Supervisor struct {
	*Proc
	// Client is connected to the supervisor's RPC; Stop closes it.
	Client *rpc.Client
	once   sync.Once
}

// StartSupervisor writes the .rr.yaml for c (rpc on a free 127.0.0.1
// port, logs at warn, the supervisor's output to stderr), starts the
// supervisor and waits until Stat answers and c.Ready holds, or ctx ends.
// The caller must call Stop.
func StartSupervisor(ctx context.Context, c Config) (*Supervisor, error) {
	port, err := FreePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	var b strings.Builder
	fmt.Fprintf(&b, "version: \"3\"\nrpc: {listen: %q}\nserver:\n  command: %q\n", addr, c.Command)
	if len(c.Env) > 0 {
		keys := make([]string, 0, len(c.Env))
		for k := range c.Env {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("  env:\n")
		for _, k := range keys {
			fmt.Fprintf(&b, "    %s: %q\n", k, c.Env[k])
		}
	}
	b.WriteString("logs: {level: warn}\n")
	b.WriteString(c.Body)
	cfg := filepath.Join(c.Dir, c.Name+".rr.yaml")
	if err := os.WriteFile(cfg, []byte(b.String()), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(c.Bin, append([]string{"serve", "-c", cfg}, c.Args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	p, err := StartProc(cmd)
	if err != nil {
		return nil, err
	}
	for {
		cl, err := rpc.Dial(ctx, addr)
		if err == nil {
			st, serr := cl.Stat(ctx)
			if serr == nil && (c.Ready == nil || c.Ready(st)) {
				return &Supervisor{Proc: p, Client: cl}, nil
			}
			cl.Close()
		}
		select {
		case <-p.Exited():
			return nil, ErrExited
		case <-ctx.Done():
			p.Stop()
			return nil, fmt.Errorf("%w: supervisor did not start: %w", ErrTimeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Consuming is a Config.Ready for a supervisor whose only pipeline must be
// listed as consuming.
func Consuming(st []consumer.Stat) bool { return len(st) == 1 && st[0].Consuming }

// Stop closes the client, then stops the process like Proc.Stop. It may be
// called more than once.
func (s *Supervisor) Stop() {
	s.once.Do(func() { s.Client.Close() })
	s.Proc.Stop()
}

// WaitAcked polls Stat until the only pipeline counts want jobs acked in
// all, or ctx ends (ErrTimeout). progress, when not nil, is given each
// stat.
//
// Each Stat costs the supervisor CPU time (an idle-to-busy wake-up, about
// 0.1 ms), which would otherwise count against the jobs being measured: so
// the wait between polls follows the ack rate seen so far, half of the
// time the remaining jobs should take, between poll (the resolution near
// the end) and maxPollGap.
func (s *Supervisor) WaitAcked(ctx context.Context, want uint64, poll time.Duration, progress func(consumer.Stat)) error {
	var prevAcked uint64
	var prevAt time.Time
	for {
		st, err := s.Client.Stat(ctx)
		if err != nil {
			return err
		}
		wait := poll
		if len(st) == 1 {
			if progress != nil {
				progress(st[0])
			}
			acked := st[0].Acked
			if acked >= want {
				return nil
			}
			now := time.Now()
			if !prevAt.IsZero() {
				wait = pollGap(want-acked, acked-min(prevAcked, acked), now.Sub(prevAt), poll)
			}
			prevAcked, prevAt = acked, now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w waiting for %d acks", ErrTimeout, want)
		case <-time.After(wait):
		}
	}
}

// maxPollGap is the longest wait between two polls of WaitAcked.
const maxPollGap = 50 * time.Millisecond

// pollGap is the wait before the next poll: half the time the remaining
// jobs take at the rate of the last interval (done jobs in took), within
// [poll, maxPollGap]; poll while no rate is known.
func pollGap(remaining, done uint64, took, poll time.Duration) time.Duration {
	if done == 0 || took <= 0 {
		return poll
	}
	eta := time.Duration(float64(took) * float64(remaining) / float64(done))
	return min(max(eta/2, poll), max(maxPollGap, poll))
}

// ResumeUntilAcked resumes pipeline and returns the time from the resume
// until the only pipeline counts want jobs acked in all (WaitAcked).
func (s *Supervisor) ResumeUntilAcked(ctx context.Context, pipeline string, want uint64, poll time.Duration) (time.Duration, error) {
	start := time.Now()
	if err := s.Client.Resume(ctx, pipeline); err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	if err := s.WaitAcked(ctx, want, poll, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// PushAll pushes n jobs, job(i) for i in [0, n), through PushBatch in
// batches of batch jobs.
func PushAll(ctx context.Context, cl *rpc.Client, n, batch int, job func(i int) consumer.Job) error {
	if batch < 1 {
		return errors.New("benchkit: batch must be at least 1")
	}
	for pushed := 0; pushed < n; pushed += batch {
		js := make([]consumer.Job, min(batch, n-pushed))
		for i := range js {
			js[i] = job(pushed + i)
		}
		if err := cl.PushBatch(ctx, js); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	return nil
}

// Percentile returns the p-quantile (0..1) of sorted, rounded to the
// microsecond; 0 for no samples.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(p*float64(len(sorted)-1))].Round(time.Microsecond)
}
