package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/pipevisor/pipevisor/frame"
)

// errJobFailed is returned when a worker answers a job with anything but
// an ack.
var errJobFailed = errors.New("amqpbench: the worker did not ack the job")

// phpWorker is a PHP worker process driven directly over its pipes with
// goridge frames, as the supervisor's pool drives one: the job context and
// body in an exec frame on stdin, the reply frame on stdout.
type phpWorker struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *os.File
	r     *frame.Reader
}

// startPHPWorker starts command with the environment the pool gives
// workers and runs the pid handshake. The caller must call stop.
func startPHPWorker(ctx context.Context, command []string) (*phpWorker, error) {
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
		return nil, fmt.Errorf("amqpbench: start %v: %w", command, err)
	}
	_ = outR.Fd() // blocking reads, as the pool's
	_ = inW.Fd()  // blocking writes, as the pool's
	w := &phpWorker{cmd: cmd, stdin: inW, out: outR, r: frame.NewReader(outR)}
	if _, err := inW.Write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(os.Getpid()))); err != nil {
		w.stop()
		return nil, fmt.Errorf("amqpbench: pid request: %w", err)
	}
	if _, err := w.r.ReadFrame(); err != nil {
		w.stop()
		return nil, fmt.Errorf("amqpbench: pid reply: %w", err)
	}
	return w, nil
}

// write sends the encoded job frames b in one write.
func (w *phpWorker) write(b []byte) error {
	if _, err := w.stdin.Write(b); err != nil {
		return fmt.Errorf("amqpbench: write job: %w", err)
	}
	return nil
}

// readAck reads the reply to the next job and checks that it is an ack.
func (w *phpWorker) readAck() error {
	f, err := w.r.ReadFrame()
	if err != nil {
		return fmt.Errorf("amqpbench: read reply: %w", err)
	}
	if f.Flags&frame.FlagError != 0 {
		return fmt.Errorf("%w: error frame %q", errJobFailed, f.Payload)
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
		return fmt.Errorf("%w: reply type %d", errJobFailed, rep.Type)
	}
	return nil
}

// stop closes the worker's stdin (it exits on EOF) and waits for it.
func (w *phpWorker) stop() {
	_ = w.stdin.Close()
	_ = w.cmd.Wait()
	_ = w.out.Close()
}
