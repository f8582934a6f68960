package rpc

import (
	"context"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"testing"
	"time"

	"github.com/roadrunner-server/goridge/v3/pkg/frame"
	"google.golang.org/protobuf/proto"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
)

// TestStatBacklogOfAPausedMemoryPipeline: 6 jobs pushed to a memory
// pipeline that is not consumed are its backlog: RoadRunner's active reads
// 6 (the jobs it would run), queued 6, running 0, ready false; what the
// RoadRunner SDK's getPipelineStat() reads, in the protobuf codec.
func TestStatBacklogOfAPausedMemoryPipeline(t *testing.T) {
	mem := memjobs.Config{}
	mem.Defaults()
	m := jobs.New(jobs.Config{
		Factory: func(_ context.Context, p config.Pipeline) (jobs.Driver, error) {
			return memjobs.New(p.Name, *p.Memory, nil), nil
		},
		Executor: exectest.Func((&busyExec{release: make(chan struct{})}).Exec),
		Pipelines: map[string]config.Pipeline{
			"idle": {Driver: config.DriverMemory, Priority: 10, Concurrency: 2, Retry: retry.Defaults(), Memory: &mem},
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Stop(context.Background()) })
	var js []consumer.Job
	for i := range 6 {
		js = append(js, consumer.Job{ID: fmt.Sprint(i), Name: "J", Pipeline: "idle"})
	}
	if err := m.Push(ctx, js); err != nil {
		t.Fatal(err)
	}

	conn := dialRaw(t, startServer(t, NewServer(m, &fakeJobs{}, nil), "tcp://127.0.0.1:0"))
	r := parseReply(t, conn.roundTrip(rpcFrame(frame.CodecProto, 1, "jobs.Stat", nil)))
	var stats jobsv1.Stats
	if r.isError() || proto.Unmarshal(r.body, &stats) != nil || len(stats.GetStats()) != 1 {
		t.Fatalf("reply %q", r.body)
	}
	st := stats.GetStats()[0]
	if st.GetActive() != 6 || st.GetReady() || st.GetQueued() != 6 || st.GetRunning() != 0 || st.GetDelayed() != 0 {
		t.Errorf("stat %v: want active 6, ready false, queued 6, running 0", st)
	}
}
