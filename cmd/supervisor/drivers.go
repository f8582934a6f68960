package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/consumer/sqsjobs"
	"github.com/pipevisor/pipevisor/jobs"
)

// newFactory returns the jobs.Factory that builds each pipeline's driver:
// the one place that knows every driver, a plain switch. The boltdb
// pipelines naming one file share it (the file closes with its last
// pipeline).
func newFactory(root *config.Root, log *slog.Logger) jobs.Factory {
	files := boltjobs.NewFiles(root.BoltDB, log.With("driver", config.DriverBoltDB))
	return func(ctx context.Context, p config.Pipeline) (jobs.Driver, error) {
		dlog := log.With("pipeline", p.Name, "driver", p.Driver)
		switch p.Driver {
		case config.DriverMemory:
			return memjobs.New(p.Name, *p.Memory, dlog), nil
		case config.DriverBoltDB:
			q, err := files.Open(ctx, p.Name, *p.BoltDB, dlog)
			if err != nil {
				return nil, err
			}
			return q, nil
		case config.DriverAMQP:
			// The pipeline's prefetch is basic.qos as configured: the
			// driver holds deliveries ahead of the free slots.
			d, err := amqpjobs.New(ctx, p.Name, root.AMQP, *p.AMQP, p.DeadLetter, dlog)
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
