package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"github.com/pipevisor/pipevisor/jobs"
)

// newFactory returns the jobs.Factory that builds each pipeline's driver:
// the one place that knows every driver, a plain switch.
func newFactory(root *config.Root, log *slog.Logger) jobs.Factory {
	return func(ctx context.Context, p config.Pipeline) (jobs.Driver, error) {
		dlog := log.With("pipeline", p.Name, "driver", p.Driver)
		switch p.Driver {
		case config.DriverMemory:
			return memjobs.New(p.Name, *p.Memory, dlog), nil
		case config.DriverAMQP:
			cfg := *p.AMQP
			// Never more unsettled deliveries than the pipeline can hold.
			if held := maxHeld(p.Concurrency, root.Jobs.Pool.Pipelining, amqpReady); held > 0 && cfg.Prefetch > held {
				cfg.Prefetch = held
			}
			d, err := amqpjobs.New(ctx, p.Name, root.AMQP, cfg, p.DeadLetter, dlog)
			if err != nil {
				return nil, err
			}
			return d, nil
		case config.DriverKafka:
			if root.Kafka == nil {
				return nil, fmt.Errorf("pipeline %s: the kafka: section is missing", p.Name)
			}
			d, err := kafkajobs.New(ctx, p.Name, *root.Kafka, *p.Kafka, p.DeadLetter, dlog)
			if err != nil {
				return nil, err
			}
			return d, nil
		case config.DriverSQS:
			d, err := sqsjobs.New(ctx, p.Name, root.SQS, *p.SQS, p.DeadLetter, dlog)
			if err != nil {
				return nil, err
			}
			return d, nil
		default:
			return nil, fmt.Errorf("pipeline %s: driver %q is not built into this binary", p.Name, p.Driver)
		}
	}
}

// amqpReady reports whether the AMQP driver hands out ready deliveries
// without waiting (consumer.ReadyReceiver): only then does a pipeline
// fill batches from it, up to jobs.pool.pipelining per slot.
var amqpReady = isReadyReceiver((*amqpjobs.Driver)(nil))

// isReadyReceiver reports whether d is a consumer.ReadyReceiver.
func isReadyReceiver(d jobs.Driver) bool {
	_, ok := d.(consumer.ReadyReceiver)
	return ok
}

// maxHeld returns the most deliveries a pipeline with conc slots holds at
// once: one per slot, or pipelining per slot when its driver is a
// consumer.ReadyReceiver (ready) and pipelining is above 1.
func maxHeld(conc, pipelining int, ready bool) int {
	if ready && pipelining > 1 {
		return conc * pipelining
	}
	return conc
}
