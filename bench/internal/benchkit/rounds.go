package benchkit

import (
	"context"
	"fmt"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Rounds compares the supervisor with a plain client of the same broker
// on pipeline "bench" of Supervisor: each round fills the paused pipeline
// with Jobs jobs through PushBatch, then empties the queue either with
// Plain or by resuming the pipeline until jobs stat counts every job
// acked. Rounds alternate plain and supervisor, plain first, so neither
// gets the broker's warm-up alone.
type Rounds struct {
	Supervisor *Supervisor
	// Rounds of each consumer; Jobs a round, pushed Batch a PushBatch,
	// each with Payload.
	Rounds, Jobs, Batch int
	Payload             []byte
	// Poll is how often jobs stat is read while the supervisor consumes.
	Poll time.Duration
	// PlainName names the plain consumer in the per-round lines.
	PlainName string
	// Pause pauses pipeline "bench" so that the next fill stays in the
	// queue; it is called before the first round and after each
	// supervisor round.
	Pause func(ctx context.Context) error
	// Filled checks the queue after a fill (it holds Jobs messages).
	Filled func(ctx context.Context) error
	// Plain empties the queue of Jobs messages and returns how long it
	// took.
	Plain func(ctx context.Context) (time.Duration, error)
	// Drained checks the queue after a supervisor round and its Pause
	// (it is empty).
	Drained func(ctx context.Context) error
}

// RoundsResult is the total time each consumer took over all rounds and
// the supervisor's CPU time while it consumed.
type RoundsResult struct {
	Plain, Supervisor, CPU time.Duration
}

// Run runs the rounds, printing each round's jobs/s to stdout.
func (r Rounds) Run(ctx context.Context) (RoundsResult, error) {
	var res RoundsResult
	if err := r.Pause(ctx); err != nil {
		return res, err
	}
	var acked uint64
	for round := range r.Rounds {
		for _, plain := range []bool{true, false} {
			if err := r.fill(ctx, round, plain); err != nil {
				return res, err
			}
			if err := r.Filled(ctx); err != nil {
				return res, err
			}
			if plain {
				took, err := r.Plain(ctx)
				if err != nil {
					return res, err
				}
				res.Plain += took
				fmt.Printf("round %d %-20s %8.0f jobs/s\n", round+1, r.PlainName+":", float64(r.Jobs)/took.Seconds())
				continue
			}
			cpu0 := r.Supervisor.CPU()
			took, err := r.Supervisor.ResumeUntilAcked(ctx, "bench", acked+uint64(r.Jobs), r.Poll)
			if err != nil {
				return res, err
			}
			res.CPU += r.Supervisor.CPU() - cpu0
			acked += uint64(r.Jobs)
			res.Supervisor += took
			fmt.Printf("round %d %-20s %8.0f jobs/s\n", round+1, "supervisor:", float64(r.Jobs)/took.Seconds())
			if err := r.Pause(ctx); err != nil {
				return res, err
			}
			if err := r.Drained(ctx); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// fill pushes a round's jobs, with ids unique to the round and consumer.
func (r Rounds) fill(ctx context.Context, round int, plain bool) error {
	side := "s"
	if plain {
		side = "p"
	}
	return PushAll(ctx, r.Supervisor.Client, r.Jobs, r.Batch, func(i int) consumer.Job {
		return consumer.Job{ID: fmt.Sprintf("%d%s%d", round, side, i), Name: "Bench", Pipeline: "bench", Payload: r.Payload}
	})
}
