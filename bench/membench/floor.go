package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/frame"
)

// floor is what the bare pipe round trip to the same PHP workers costs:
// the lower bound of the supervisor's CPU per job on this machine.
type floor struct {
	took      time.Duration // all jobs, first write to last reply
	user, sys time.Duration // this process's CPU time over the run
	jobs      int
}

// perJob returns CPU µs per job: user, kernel.
func (f floor) perJob() (user, sys float64) {
	return float64(f.user.Microseconds()) / float64(f.jobs), float64(f.sys.Microseconds()) / float64(f.jobs)
}

// measureFloor starts workers PHP processes of command as the pool does
// (pipes, pid handshake) and runs n jobs through them from this process
// with nothing else: each goroutine writes one pre-encoded job frame to
// its worker and reads the reply, in blocking mode, like a pool slot
// (with depth above 1, it keeps depth frames written ahead of the
// replies, as the pool does with jobs.pool.pipelining). It
// returns the CPU time this process spent per job, which is the kernel's
// cost of the round trip (context switches, pipe wakeups; expensive on
// virtual machines) plus a little framing. The supervisor cannot spend
// less than this per job on the same machine.
func measureFloor(ctx context.Context, command []string, workers, n, depth int) (floor, error) {
	job := frame.EncodeExec(frame.Payload{
		Context: []byte(`{"id":"1","job":"Bench","driver":"memory","queue":"bench","headers":{"x-attempt":["1"]},"pipeline":"bench"}`),
		Body:    []byte("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
	})
	ws := make([]*bareWorker, 0, workers)
	defer func() {
		for _, w := range ws {
			w.stop()
		}
	}()
	for range workers {
		w, err := startBare(ctx, command)
		if err != nil {
			return floor{}, err
		}
		ws = append(ws, w)
	}
	var ru0 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t0 := time.Now()
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			errs[i] = w.run(job, n/len(ws), depth)
		})
	}
	wg.Wait()
	took := time.Since(t0)
	var ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	if err := errors.Join(errs...); err != nil {
		return floor{}, err
	}
	return floor{
		took: took, jobs: n / len(ws) * len(ws),
		user: time.Duration(ru1.Utime.Nano() - ru0.Utime.Nano()),
		sys:  time.Duration(ru1.Stime.Nano() - ru0.Stime.Nano()),
	}, nil
}

// bareWorker is a PHP worker driven directly over its pipes.
type bareWorker struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *os.File
	r     *frame.Reader
}

// startBare starts command with the environment the pool gives workers
// and runs the pid handshake.
func startBare(ctx context.Context, command []string) (*bareWorker, error) {
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
		return nil, fmt.Errorf("floor: start %v: %w", command, err)
	}
	_ = outR.Fd() // blocking reads, as the pool's
	w := &bareWorker{cmd: cmd, stdin: inW, out: outR, r: frame.NewReader(outR)}
	if _, err := inW.Write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(os.Getpid()))); err != nil {
		w.stop()
		return nil, fmt.Errorf("floor: pid request: %w", err)
	}
	if _, err := w.r.ReadFrame(); err != nil {
		w.stop()
		return nil, fmt.Errorf("floor: pid reply: %w", err)
	}
	return w, nil
}

// run sends the job frame n times, keeping depth of them (at least one)
// written ahead of the replies, and reads every reply.
func (w *bareWorker) run(job []byte, n, depth int) error {
	ahead := bytes.Repeat(job, max(depth, 1))
	written := 0
	for read := 0; read < n; read++ {
		if written == read {
			k := min(max(depth, 1), n-written)
			if _, err := w.stdin.Write(ahead[:k*len(job)]); err != nil {
				return fmt.Errorf("floor: write job: %w", err)
			}
			written += k
		}
		f, err := w.r.ReadFrame()
		if err != nil {
			return fmt.Errorf("floor: read reply: %w", err)
		}
		if f.Flags&frame.FlagError != 0 {
			return fmt.Errorf("floor: the worker failed the job: %q", f.Payload)
		}
	}
	return nil
}

// stop closes the worker's stdin (it exits on EOF) and waits for it.
func (w *bareWorker) stop() {
	_ = w.stdin.Close()
	_ = w.cmd.Wait()
	_ = w.out.Close()
}
