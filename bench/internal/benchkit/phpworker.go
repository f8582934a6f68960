package benchkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/pipevisor/pipevisor/frame"
)

// ErrJobFailed is returned by ReadAck when a worker answers a job with
// anything but an ack.
var ErrJobFailed = errors.New("benchkit: the worker did not ack the job")

// PHPWorker is a worker process driven directly over its pipes with
// goridge frames, as the supervisor's pool drives one: the job context and
// body in an exec frame on stdin, the reply frame on stdout (read in
// blocking mode, as the pool reads it). The benchmarks' plain references
// and the bare pipe floor use it.
type PHPWorker struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *os.File
	r     *frame.Reader
}

// StartPHPWorker starts command with the environment the pool gives
// workers and runs the pid handshake. The caller must call Stop.
func StartPHPWorker(ctx context.Context, command []string) (*PHPWorker, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = append(os.Environ(), "RR_MODE=jobs", "RR_RELAY=pipes")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("benchkit: start %v: %w", command, err)
	}
	_ = outR.Fd() // blocking reads, as the pool's
	w := &PHPWorker{cmd: cmd, stdin: inW, out: outR, r: frame.NewReader(outR)}
	if _, err := inW.Write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(os.Getpid()))); err != nil {
		w.Stop()
		return nil, fmt.Errorf("benchkit: pid request: %w", err)
	}
	if _, err := w.r.ReadFrame(); err != nil {
		w.Stop()
		return nil, fmt.Errorf("benchkit: pid reply: %w", err)
	}
	return w, nil
}

// Write sends the encoded job frames b in one write.
func (w *PHPWorker) Write(b []byte) error {
	if _, err := w.stdin.Write(b); err != nil {
		return fmt.Errorf("benchkit: write job: %w", err)
	}
	return nil
}

// ReadReply reads the reply frame to the next job and fails on an error
// frame; it does not parse the reply (the bare pipe floor's cost).
func (w *PHPWorker) ReadReply() (frame.Frame, error) {
	f, err := w.r.ReadFrame()
	if err != nil {
		return f, fmt.Errorf("benchkit: read reply: %w", err)
	}
	if f.Flags&frame.FlagError != 0 {
		return f, fmt.Errorf("%w: error frame %q", ErrJobFailed, f.Payload)
	}
	return f, nil
}

// ReadAck reads the reply to the next job and checks that it is an ack,
// parsing it as the supervisor does.
func (w *PHPWorker) ReadAck() error {
	f, err := w.ReadReply()
	if err != nil {
		return err
	}
	pl, err := frame.SplitReply(f)
	if err != nil {
		return err
	}
	rep, err := frame.ParseReply(pl.Body)
	if err != nil {
		return err
	}
	if rep.Type != frame.ReplyAck && rep.Type != frame.ReplyNoError {
		return fmt.Errorf("%w: reply type %d", ErrJobFailed, rep.Type)
	}
	return nil
}

// Stop closes the worker's stdin (it exits on EOF) and waits for it.
func (w *PHPWorker) Stop() {
	_ = w.stdin.Close()
	_ = w.cmd.Wait()
	_ = w.out.Close()
}
