package jobs

import (
	"context"
	"errors"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/retry"
)

// testExec acks every job; while hold is set, jobs wait until it is
// closed (or their ctx is done).
type testExec struct {
	calls   atomic.Int64
	started chan string // job bodies as they enter Exec, when not nil
	mu      sync.Mutex
	hold    chan struct{}
}

func (x *testExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	x.calls.Add(1)
	if x.started != nil {
		x.started <- string(pl.Body)
	}
	x.mu.Lock()
	hold := x.hold
	x.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return frame.Payload{}, context.Cause(ctx)
		}
	}
	return frame.Payload{}, nil
}

// testDriver is a memjobs queue whose health and publishing can be broken.
type testDriver struct {
	*memjobs.Queue
	checkErr   atomic.Pointer[error]
	publishErr atomic.Pointer[error]
	closed     atomic.Bool
	paused     atomic.Bool
}

func (d *testDriver) Check() error {
	if p := d.checkErr.Load(); p != nil {
		return *p
	}
	return d.Queue.Check()
}

func (d *testDriver) Publish(ctx context.Context, jobs []consumer.Job) error {
	if p := d.publishErr.Load(); p != nil {
		return *p
	}
	return d.Queue.Publish(ctx, jobs)
}

// Pause records that the driver was told to stop delivering.
func (d *testDriver) Pause(ctx context.Context) error {
	d.paused.Store(true)
	return d.Queue.Pause(ctx)
}

// Resume records that the driver was told to deliver again.
func (d *testDriver) Resume(ctx context.Context) error {
	d.paused.Store(false)
	return d.Queue.Resume(ctx)
}

func (d *testDriver) Close(ctx context.Context) error {
	d.closed.Store(true)
	return d.Queue.Close(ctx)
}

// bundle is a manager under test with its drivers by name.
type bundle struct {
	m    *Manager
	exec *testExec
	mu   sync.Mutex
	drv  map[string]*testDriver
}

func (b *bundle) driver(name string) *testDriver {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.drv[name]
}

func memPipeline(name string) config.Pipeline {
	return config.Pipeline{Name: name, Driver: config.DriverMemory, Concurrency: 2,
		Retry: retry.Defaults(), Memory: &memjobs.Config{}}
}

// setup returns a started manager with the memory pipelines "a" (consumed)
// and "b" (declared only). It is stopped at the end of the test.
func setup(t *testing.T) *bundle {
	t.Helper()
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a"), "b": memPipeline("b")})
	if err := b.m.Start(context.Background(), []string{"a"}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return b
}

func newBundle(t *testing.T, pipes map[string]config.Pipeline) *bundle {
	t.Helper()
	b := &bundle{exec: &testExec{}, drv: make(map[string]*testDriver)}
	b.m = New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			if p.Driver != config.DriverMemory {
				return nil, fmt.Errorf("driver %q not available in tests", p.Driver)
			}
			d := &testDriver{Queue: memjobs.New(p.Name, *p.Memory, nil)}
			b.mu.Lock()
			b.drv[p.Name] = d
			b.mu.Unlock()
			return d, nil
		},
		Executor:  exectest.Func(b.exec.Exec),
		Pipelines: pipes,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := b.m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return b
}

func jobsFor(pipeline string, n int) []consumer.Job {
	out := make([]consumer.Job, n)
	for i := range out {
		out[i] = consumer.Job{Name: "App\\Job", Pipeline: pipeline, Payload: fmt.Appendf(nil, "%s-%d", pipeline, i)}
	}
	return out
}

// stat returns the Stat of one pipeline.
func stat(t *testing.T, m *Manager, name string) consumer.Stat {
	t.Helper()
	all, err := m.Stat(context.Background())
	if err != nil {
		t.Fatalf("Stat: %v", err)
	}
	for _, s := range all {
		if s.Pipeline == name {
			return s
		}
	}
	t.Fatalf("no stat for %q in %+v", name, all)
	return consumer.Stat{}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPushConsumedAndDeclaredOnly(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	// A pipeline that is not consumed holds nothing at the broker either:
	// its driver is paused (an AMQP consumer would otherwise prefetch).
	if !b.driver("b").paused.Load() || b.driver("a").paused.Load() {
		t.Fatalf("driver paused: a=%v b=%v, want only b (not in consume)", b.driver("a").paused.Load(), b.driver("b").paused.Load())
	}
	batch := append(jobsFor("a", 5), jobsFor("b", 3)...)
	batch = append(batch, jobsFor("a", 2)...)
	if err := b.m.Push(ctx, batch); err != nil {
		t.Fatalf("Push: %v", err)
	}
	waitFor(t, "a drained", func() bool { return stat(t, b.m, "a").Acked == 7 })
	sb := stat(t, b.m, "b")
	if sb.Ready != 3 || sb.Active != 0 || sb.Acked != 0 || sb.Consuming {
		t.Errorf("declared-only pipeline b: %+v, want 3 ready, none consumed", sb)
	}
	if got := b.m.List(); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("List = %v", got)
	}
	if err := b.m.Ready(); err != nil {
		t.Errorf("Ready with b not consumed = %v, want nil", err)
	}

	if err := b.m.Resume(ctx, []string{"b"}); err != nil {
		t.Fatalf("Resume b: %v", err)
	}
	waitFor(t, "b drained", func() bool { return stat(t, b.m, "b").Acked == 3 })
	if b.driver("b").paused.Load() {
		t.Errorf("b's driver still paused after Resume")
	}
	if sb := stat(t, b.m, "b"); !sb.Consuming || sb.Ready != 0 {
		t.Errorf("b after Resume: %+v", sb)
	}
	all, _ := b.m.Stat(ctx)
	if len(all) != 2 || all[0].Pipeline != "a" || all[1].Pipeline != "b" {
		t.Errorf("Stat not sorted by name: %+v", all)
	}
	if got := b.exec.calls.Load(); got != 10 {
		t.Errorf("executor ran %d jobs, want 10", got)
	}
}

func TestPushUnknownPipeline(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	batch := append(jobsFor("b", 2), jobsFor("nope", 1)...)
	err := b.m.Push(ctx, batch)
	if !errors.Is(err, consumer.ErrUnknownPipeline) || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("Push = %v, want ErrUnknownPipeline naming nope", err)
	}
	if r := stat(t, b.m, "b").Ready; r != 0 {
		t.Errorf("%d jobs published despite the unknown pipeline, want 0", r)
	}
	if err := b.m.Push(ctx, jobsFor("nope", 1)); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("single-pipeline Push = %v, want ErrUnknownPipeline", err)
	}
	if err := b.m.Push(ctx, nil); err != nil {
		t.Errorf("empty Push = %v", err)
	}
}

func TestPushFailureIndexes(t *testing.T) {
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a"), "b": memPipeline("b"), "c": memPipeline("c")})
	if err := b.m.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	down := error(&consumer.BatchError{Failed: map[int]error{1: errors.New("nack from broker")}})
	b.driver("b").publishErr.Store(&down)
	// a0 b0 c0 b1 a1 c1: a publishes, b fails at its 2nd job, c is not tried.
	batch := []consumer.Job{
		{Pipeline: "a"}, {Pipeline: "b"}, {Pipeline: "c"}, {Pipeline: "b"}, {Pipeline: "a"}, {Pipeline: "c"},
	}
	err := b.m.Push(context.Background(), batch)
	var be *consumer.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Push = %v, want a *consumer.BatchError", err)
	}
	if len(be.Failed) != 3 || be.Failed[3] == nil || !errors.Is(be.Failed[2], ErrNotPublished) || !errors.Is(be.Failed[5], ErrNotPublished) {
		t.Errorf("failed jobs = %v, want 3 (b's 2nd) plus 2 and 5 not published", be.Failed)
	}
	if r := stat(t, b.m, "a").Ready; r != 2 {
		t.Errorf("a has %d ready, want 2", r)
	}
	if r := stat(t, b.m, "c").Ready; r != 0 {
		t.Errorf("c has %d ready, want 0", r)
	}
}

func TestPauseResume(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if err := b.m.Pause(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Push(ctx, jobsFor("a", 4)); err != nil {
		t.Fatalf("Push to a paused pipeline: %v", err)
	}
	// Give a paused pipeline a moment in which it could (wrongly) consume.
	time.Sleep(20 * time.Millisecond)
	if s := stat(t, b.m, "a"); s.Ready != 4 || s.Active != 0 || s.Consuming {
		t.Errorf("paused: %+v, want 4 ready, none active", s)
	}
	if err := b.m.Ready(); !errors.Is(err, pipeline.ErrPaused) {
		t.Errorf("Ready while paused = %v, want an error wrapping pipeline.ErrPaused (not consuming)", err)
	}
	if err := b.m.Resume(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Ready(); err != nil {
		t.Errorf("Ready after resume = %v, want nil", err)
	}
	waitFor(t, "a drained", func() bool { return stat(t, b.m, "a").Acked == 4 })
	if err := b.m.Pause(ctx, []string{"a", "zzz"}); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("Pause unknown = %v, want ErrUnknownPipeline", err)
	}
	if !stat(t, b.m, "a").Consuming {
		t.Error("a was paused by a Pause that named an unknown pipeline")
	}
	if err := b.m.Resume(ctx, []string{"zzz"}); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("Resume unknown = %v, want ErrUnknownPipeline", err)
	}
}

func TestDeclare(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	if err := b.m.Declare(ctx, map[string]string{"name": "c", "driver": "memory", "priority": "3", "concurrency": "1"}); err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if err := b.m.Push(ctx, jobsFor("c", 3)); err != nil {
		t.Fatal(err)
	}
	// Not in jobs.consume: like RoadRunner, it waits for Resume.
	if s := stat(t, b.m, "c"); s.Consuming || s.Ready != 3 || !b.driver("c").paused.Load() {
		t.Errorf("declared pipeline before Resume: %+v (driver paused %v)", s, b.driver("c").paused.Load())
	}
	if err := b.m.Resume(ctx, []string{"c"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "c drained", func() bool { return stat(t, b.m, "c").Acked == 3 })
	if s := stat(t, b.m, "c"); s.Driver != "memory" || s.Priority != 3 {
		t.Errorf("declared pipeline stat: %+v", s)
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "c", "driver": "memory"}); !errors.Is(err, ErrPipelineExists) {
		t.Errorf("second Declare = %v, want ErrPipelineExists", err)
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "d", "driver": "nope"}); err == nil || !strings.Contains(err.Error(), "driver") {
		t.Errorf("Declare with an unknown driver = %v, want an error about driver", err)
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "d", "driver": "memory", "prefetch": "-1"}); err == nil || !strings.Contains(err.Error(), "prefetch") {
		t.Errorf("Declare with a bad driver key = %v, want an error about prefetch", err)
	}
	if got := b.m.List(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("List = %v", got)
	}
}

// TestFactorySeesSlots checks that the Factory is given the number of
// slots each pipeline gets, DefaultConcurrency filled in, for pipelines
// from the file and declared ones alike (cmd caps the AMQP prefetch by it).
func TestFactorySeesSlots(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	pa, pb := memPipeline("a"), memPipeline("b")
	pa.Concurrency = 0
	m := New(Config{
		Factory: func(ctx context.Context, p config.Pipeline) (Driver, error) {
			mu.Lock()
			seen[p.Name] = p.Concurrency
			mu.Unlock()
			return &testDriver{Queue: memjobs.New(p.Name, *p.Memory, nil)}, nil
		},
		Executor:           exectest.Func((&testExec{}).Exec),
		Pipelines:          map[string]config.Pipeline{"a": pa, "b": pb},
		DefaultConcurrency: 3,
		Pipelining:         4,
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	ctx := context.Background()
	if err := m.Start(ctx, []string{"a", "b"}); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := m.Declare(ctx, map[string]string{"name": "c", "driver": "memory"}); err != nil {
		t.Fatalf("Declare c: %v", err)
	}
	if err := m.Declare(ctx, map[string]string{"name": "d", "driver": "memory", "concurrency": "5"}); err != nil {
		t.Fatalf("Declare d: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := map[string]int{"a": 3, "b": 2, "c": 3, "d": 5}; !maps.Equal(seen, want) {
		t.Errorf("Factory saw concurrency %v, want %v", seen, want)
	}
}

func TestDestroyWithJobsInFlight(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	b.exec.started = make(chan string, 16)
	b.exec.hold = make(chan struct{})
	if err := b.m.Push(ctx, jobsFor("a", 5)); err != nil {
		t.Fatal(err)
	}
	for range 2 { // concurrency 2
		<-b.exec.started
	}
	type result struct {
		names []string
		err   error
	}
	res := make(chan result, 1)
	go func() {
		names, err := b.m.Destroy(ctx, []string{"a"})
		res <- result{names, err}
	}()
	waitFor(t, "a removed", func() bool { return !slices.Contains(b.m.List(), "a") })
	if err := b.m.Push(ctx, jobsFor("a", 1)); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("Push to a destroyed pipeline = %v, want ErrUnknownPipeline", err)
	}
	select {
	case r := <-res:
		t.Fatalf("Destroy returned %+v while jobs were running", r)
	case <-time.After(20 * time.Millisecond):
	}
	q := b.driver("a").Queue
	close(b.exec.hold)
	select {
	case r := <-res:
		if r.err != nil || !slices.Equal(r.names, []string{"a"}) {
			t.Errorf("Destroy = %v, %v", r.names, r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Destroy did not return")
	}
	if !b.driver("a").closed.Load() {
		t.Error("driver of a destroyed pipeline not closed")
	}
	// The two running jobs finished (acked); the other three were never
	// started and are still on the broker.
	if got := b.exec.calls.Load(); got != 2 {
		t.Errorf("executor ran %d jobs, want 2", got)
	}
	if s, _ := q.Stat(ctx); s.Ready != 3 || s.Active != 0 {
		t.Errorf("queue after Destroy: %+v, want 3 ready and 0 active", s)
	}
	if _, err := b.m.Destroy(ctx, []string{"a"}); !errors.Is(err, consumer.ErrUnknownPipeline) {
		t.Errorf("second Destroy = %v, want ErrUnknownPipeline", err)
	}
}

func TestStopInterruptsAfterGrace(t *testing.T) {
	b := setup(t)
	b.exec.started = make(chan string, 16)
	b.exec.hold = make(chan struct{})
	if err := b.m.Push(context.Background(), jobsFor("a", 1)); err != nil {
		t.Fatal(err)
	}
	<-b.exec.started
	q := b.driver("a").Queue
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := b.m.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if s, _ := q.Stat(context.Background()); s.Ready != 1 || s.Active != 0 {
		t.Errorf("interrupted job: %+v, want it back on the queue", s)
	}
	if err := b.m.Push(context.Background(), jobsFor("a", 1)); !errors.Is(err, ErrStopped) {
		t.Errorf("Push after Stop = %v, want ErrStopped", err)
	}
	if err := b.m.Ready(); !errors.Is(err, ErrStopped) {
		t.Errorf("Ready after Stop = %v, want ErrStopped", err)
	}
	if _, err := b.m.Stat(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Stat after Stop = %v, want ErrStopped", err)
	}
	if err := b.m.Stop(context.Background()); err != nil {
		t.Errorf("second Stop = %v", err)
	}
}

func TestReady(t *testing.T) {
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a")})
	if err := b.m.Ready(); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Ready before Start = %v, want ErrNotStarted", err)
	}
	if err := b.m.Start(context.Background(), []string{"a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { return b.m.Ready() == nil })
	down := errors.New("connection refused")
	b.driver("a").checkErr.Store(&down)
	if err := b.m.Ready(); !errors.Is(err, down) || !strings.Contains(err.Error(), "a") {
		t.Errorf("Ready with a broken driver = %v", err)
	}
	if err := b.m.Start(context.Background(), nil); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start = %v, want ErrStarted", err)
	}
}

func TestStartErrors(t *testing.T) {
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a"), "z": {Name: "z", Driver: "kafka"}})
	err := b.m.Start(context.Background(), []string{"a"})
	if err == nil || !strings.Contains(err.Error(), `"z"`) {
		t.Fatalf("Start with a failing factory = %v, want an error naming z", err)
	}
	if !b.driver("a").closed.Load() {
		t.Error("driver created before the failure was not closed")
	}
	if got := b.m.List(); len(got) != 0 {
		t.Errorf("List after a failed Start = %v", got)
	}
}

// TestDeclareConsumesWhenListedInConsume checks RoadRunner's rule: a
// declared pipeline whose name is in jobs.consume starts consuming at
// once; a name in consume with no configured pipeline is no error.
func TestDeclareConsumesWhenListedInConsume(t *testing.T) {
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a")})
	ctx := context.Background()
	if err := b.m.Start(ctx, []string{"a", "later"}); err != nil {
		t.Fatalf("Start with a consume name declared later: %v", err)
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "later", "driver": "memory", "consume_all": "x"}); err == nil {
		t.Fatal("memory has no consume_all: want an error")
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "later", "driver": "memory", "prefetch": "10"}); err != nil {
		t.Fatalf("Declare: %v", err)
	}
	if err := b.m.Push(ctx, jobsFor("later", 4)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "later drained without Resume", func() bool { return stat(t, b.m, "later").Acked == 4 })
	if b.driver("later").paused.Load() {
		t.Error("driver of a consumed declared pipeline was paused")
	}
}
