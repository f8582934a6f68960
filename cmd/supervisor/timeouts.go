package main

import (
	"context"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// boundedJobs bounds every jobs.* RPC operation by jobs.timeout
// (RoadRunner's key), so a push to a broker that is down fails in time
// instead of hanging the client.
type boundedJobs struct {
	rpc.Jobs
	d time.Duration
}

func withTimeout(j rpc.Jobs, d time.Duration) rpc.Jobs {
	if d <= 0 {
		return j
	}
	return boundedJobs{Jobs: j, d: d}
}

func (b boundedJobs) Push(ctx context.Context, jobs []consumer.Job) error {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Push(ctx, jobs)
}

func (b boundedJobs) Pause(ctx context.Context, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Pause(ctx, names)
}

func (b boundedJobs) Resume(ctx context.Context, names []string) error {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Resume(ctx, names)
}

func (b boundedJobs) Declare(ctx context.Context, pipeline map[string]string) error {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Declare(ctx, pipeline)
}

func (b boundedJobs) Destroy(ctx context.Context, names []string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Destroy(ctx, names)
}

func (b boundedJobs) Stat(ctx context.Context) ([]consumer.Stat, error) {
	ctx, cancel := context.WithTimeout(ctx, b.d)
	defer cancel()
	return b.Jobs.Stat(ctx)
}
