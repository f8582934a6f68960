package jobs

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pipeline"
)

// failExec fails every job.
type failExec struct{}

func (failExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	return frame.Payload{}, errors.New("worker says no")
}

// hiddenDead is a driver without a dead list of its own.
type hiddenDead struct {
	consumer.Consumer
	consumer.Publisher
}

// Dead lists the jobs a memory pipeline dead-lettered; other drivers
// have none (ErrNoDeadList), unknown names are ErrUnknownPipeline.
func TestDeadList(t *testing.T) {
	once := memPipeline("mem")
	once.Retry = pipeline.RetryPolicy{MaxAttempts: 1}
	m := New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			q := memjobs.New(p.Name, *p.Memory, nil)
			if p.Name == "other" {
				return hiddenDead{q, q}, nil
			}
			return q, nil
		},
		Executor:  failExec{},
		Pipelines: map[string]config.Pipeline{"mem": once, "other": memPipeline("other")},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	if err := m.Start(context.Background(), []string{"mem"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Push(context.Background(), jobsFor("mem", 2)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 dead", func() bool { return stat(t, m, "mem").Dead == 2 })
	dead, err := m.Dead("mem")
	if err != nil || len(dead) != 2 {
		t.Fatalf("Dead(mem) = %v, %v", dead, err)
	}
	if dead[0].Job.Pipeline != "mem" || dead[0].Job.ID == "" || dead[0].Reason == "" {
		t.Errorf("dead job = %+v", dead[0])
	}
	if _, err := m.Dead("other"); !errors.Is(err, ErrNoDeadList) {
		t.Errorf("Dead(other) = %v, want ErrNoDeadList", err)
	}
	if _, err := m.Dead("nope"); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("Dead(nope) = %v, want ErrUnknownPipeline", err)
	}
}
