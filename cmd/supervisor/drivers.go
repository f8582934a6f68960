package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
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
		case config.DriverKafka:
			if root.Kafka == nil {
				return nil, fmt.Errorf("pipeline %s: the kafka: section is missing", p.Name)
			}
			return kafkajobs.New(ctx, p.Name, *root.Kafka, *p.Kafka, p.DeadLetter, dlog)
		default:
			return nil, fmt.Errorf("pipeline %s: driver %q is not built into this binary", p.Name, p.Driver)
		}
	}
}
