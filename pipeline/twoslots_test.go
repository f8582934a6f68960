package pipeline

import (
	"context"
	"fmt"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
)

// Two slots with pipelining 8 each take a full batch of the 20 jobs pushed
// while the pipeline was paused: sixteen jobs are out at once.
func TestTwoSlotsTakeABatchEach(t *testing.T) {
	q := memjobs.New("mem", memjobs.Config{}, nil)
	t.Cleanup(func() { _ = q.Close(context.Background()) })
	release := make(chan struct{})
	ex := &batchExec{t: t, reply: func(ctx context.Context, jc frame.JobContext) (frame.Payload, error) {
		<-release
		return frame.Payload{}, nil
	}}
	p := New(Config{Name: "mem", Concurrency: 2, Pipelining: 8}, q, ex, nil)
	ctx := context.Background()
	if err := p.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	start(t, p)
	jobs := make([]consumer.Job, 20)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprint(i), Name: "j", Pipeline: "mem"}
	}
	if err := q.Publish(ctx, jobs); err != nil {
		t.Fatal(err)
	}
	if err := p.Resume(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "16 jobs out", func() bool { return p.Stat(ctx).Active == 16 })
	close(release)
	waitFor(t, "20 acked", func() bool { return p.Stat(ctx).Acked == 20 })
}
