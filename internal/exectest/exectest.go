// Package exectest holds executors for tests of the packages that run
// jobs through a pipeline.Executor without a worker pool.
package exectest

import (
	"context"
	"fmt"
	"time"

	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pool"
)

// Func runs one job; as an executor, it runs the jobs of a batch one
// after the other on the calling goroutine, each result timed when f
// returned.
type Func func(ctx context.Context, pl frame.Payload) (frame.Payload, error)

// Run sets res[i] to f's result for pls[i], in order; the jobs left
// when send ends fail as not sent (pool.ErrNoWorker wrapping its cause).
func (f Func) Run(ctx, send context.Context, pls []frame.Payload, res []pool.Result) {
	for i, pl := range pls {
		if send.Err() != nil {
			res[i] = pool.Result{Err: fmt.Errorf("%w: job not sent: %w", pool.ErrNoWorker, context.Cause(send)), At: time.Now()}
			continue
		}
		out, err := f(ctx, pl)
		res[i] = pool.Result{Out: out, Err: err, At: time.Now()}
	}
}
