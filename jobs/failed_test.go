package jobs

import (
	"context"
	"errors"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/retry"
)

// switchExec fails every job until ok is set, then acks them.
type switchExec struct{ ok atomic.Bool }

func (e *switchExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	if !e.ok.Load() {
		return frame.Payload{}, errors.New("worker says no")
	}
	return frame.Payload{Body: []byte(`{"type":2,"data":{}}`)}, nil
}

// hiddenDead is a driver without a dead store of its own.
type hiddenDead struct {
	consumer.Consumer
	consumer.Publisher
}

func ids(dead []consumer.DeadJob) []string {
	out := make([]string, len(dead))
	for i, d := range dead {
		out[i] = d.Job.ID
	}
	return out
}

// The Failed methods list, show, retry and remove the dead jobs of one
// pipeline or of all, and name what they could not find.
func TestFailedJobs(t *testing.T) {
	ctx := context.Background()
	exec := &switchExec{}
	pipes := map[string]config.Pipeline{"other": memPipeline("other")}
	for _, name := range []string{"a", "b"} {
		p := memPipeline(name)
		p.Retry = retry.Policy{MaxAttempts: 1}
		pipes[name] = p
	}
	m := New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			q := memjobs.New(p.Name, *p.Memory, nil)
			if p.Name == "other" {
				return hiddenDead{q, q}, nil
			}
			return q, nil
		},
		Executor:  exectest.Func(exec.Exec),
		Pipelines: pipes,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	if err := m.Start(ctx, []string{"a", "b"}); err != nil {
		t.Fatal(err)
	}
	push := []consumer.Job{
		{ID: "a1", Name: "A", Pipeline: "a", Payload: []byte("x")},
		{ID: "a2", Name: "A", Pipeline: "a", Payload: []byte("y")},
		{ID: "b1", Name: "B", Pipeline: "b", Payload: []byte("z"), Headers: map[string][]string{"h": {"v"}}},
	}
	if err := m.Push(ctx, push); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "3 dead", func() bool { return stat(t, m, "a").Dead == 2 && stat(t, m, "b").Dead == 1 })

	all, err := m.FailedList(ctx, "", 0)
	if err != nil || len(all) != 3 {
		t.Fatalf("FailedList(all) = %v, %v", all, err)
	}
	if got := ids(all); !slices.Contains(got, "a1") || !slices.Contains(got, "b1") || all[2].Job.Pipeline != "b" {
		t.Errorf("FailedList(all) ids %v, last pipeline %q", got, all[2].Job.Pipeline)
	}
	if one, err := m.FailedList(ctx, "", 1); err != nil || len(one) != 1 {
		t.Errorf("FailedList limit 1 = %v, %v", one, err)
	}
	if _, err := m.FailedList(ctx, "other", 0); !errors.Is(err, consumer.ErrNoDeadStore) {
		t.Errorf("FailedList(other) = %v, want ErrNoDeadStore", err)
	}
	if _, err := m.FailedList(ctx, "nope", 0); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("FailedList(nope) = %v, want ErrUnknownPipeline", err)
	}
	b1, err := m.FailedShow(ctx, "", "b1")
	if err != nil || b1.Job.Pipeline != "b" || string(b1.Job.Payload) != "z" || b1.Job.Headers["h"][0] != "v" ||
		b1.Reason == "" || b1.Attempts != 1 {
		t.Errorf("FailedShow(b1) = %+v, %v", b1, err)
	}
	if _, err := m.FailedShow(ctx, "", "zz"); !errors.Is(err, consumer.ErrDeadNotFound) {
		t.Errorf("FailedShow(zz) = %v, want ErrDeadNotFound", err)
	}

	exec.ok.Store(true)
	done, err := m.FailedRetry(ctx, "", consumer.DeadSelection{IDs: []string{"a2", "b1", "zz"}})
	if !errors.Is(err, consumer.ErrDeadNotFound) || !slices.Equal(done, []string{"a2", "b1"}) {
		t.Fatalf("FailedRetry(a2 b1 zz) = %v, %v; want a2 b1 and ErrDeadNotFound", done, err)
	}
	waitFor(t, "2 acked", func() bool { return stat(t, m, "a").Acked == 1 && stat(t, m, "b").Acked == 1 })
	if left, _ := m.FailedList(ctx, "", 0); !slices.Equal(ids(left), []string{"a1"}) {
		t.Errorf("after retry the failed jobs are %v, want a1", ids(left))
	}
	done, err = m.FailedRemove(ctx, "a", consumer.DeadSelection{All: true})
	if err != nil || !slices.Equal(done, []string{"a1"}) {
		t.Fatalf("FailedRemove(a, all) = %v, %v", done, err)
	}
	if left, _ := m.FailedList(ctx, "", 0); len(left) != 0 {
		t.Errorf("after remove the failed jobs are %v", ids(left))
	}
}
