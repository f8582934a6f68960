package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
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
	ws := make([]*benchkit.PHPWorker, 0, workers)
	defer func() {
		for _, w := range ws {
			w.Stop()
		}
	}()
	for range workers {
		w, err := benchkit.StartPHPWorker(ctx, command)
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
			errs[i] = runBare(w, job, n/len(ws), depth)
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

// runBare sends the job frame n times to w, keeping depth of them (at
// least one) written ahead of the replies, and reads every reply.
func runBare(w *benchkit.PHPWorker, job []byte, n, depth int) error {
	ahead := bytes.Repeat(job, max(depth, 1))
	written := 0
	for read := 0; read < n; read++ {
		if written == read {
			k := min(max(depth, 1), n-written)
			if err := w.Write(ahead[:k*len(job)]); err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			written += k
		}
		if _, err := w.ReadReply(); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
	}
	return nil
}
