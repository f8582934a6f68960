package pipeline

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// pausingConsumer adds consumer.Pauser, Stater and Checker to fakeConsumer.
type pausingConsumer struct {
	*fakeConsumer
	pauses, resumes atomic.Int32
	checkErr        atomic.Pointer[error]
}

func (c *pausingConsumer) Pause(context.Context) error  { c.pauses.Add(1); return nil }
func (c *pausingConsumer) Resume(context.Context) error { c.resumes.Add(1); return nil }

func (c *pausingConsumer) Stat(context.Context) (consumer.Stat, error) {
	return consumer.Stat{Driver: "memory", Queue: "q", Ready: int64(len(c.queue)), Delayed: 5, Reserved: 1}, nil
}

func (c *pausingConsumer) Check() error {
	if p := c.checkErr.Load(); p != nil {
		return *p
	}
	return nil
}

func TestPauseResume(t *testing.T) {
	for _, withPauser := range []bool{false, true} {
		name := "gate only"
		if withPauser {
			name = "driver pauser"
		}
		t.Run(name, func(t *testing.T) {
			fc := newFakeConsumer(16)
			pc := &pausingConsumer{fakeConsumer: fc}
			var c consumer.Consumer = fc
			if withPauser {
				c = pc
			}
			p := New(Config{Name: "p", Concurrency: 2}, c, execFunc(ackExec), nil)
			start(t, p)
			fc.push("before", 1, nil)
			fc.next(t)

			ctx := context.Background()
			if err := p.Pause(ctx); err != nil {
				t.Fatal(err)
			}
			if err := p.Pause(ctx); err != nil {
				t.Fatalf("second Pause = %v", err)
			}
			for range 3 {
				fc.push("during", 1, nil)
			}
			// Paused: the jobs stay on the broker. A Receive that Pause
			// cut short may still have taken one: it goes back unstarted
			// (Release, no attempt spent).
			quiet := time.After(30 * time.Millisecond)
		paused:
			for {
				select {
				case s := <-fc.settles:
					if s.Outcome.Action != consumer.Release || s.Outcome.Delay != 0 || !strings.Contains(s.Outcome.Reason, "paused") {
						t.Fatalf("job %+v processed while paused", s)
					}
				case <-quiet:
					break paused
				}
			}
			waitFor(t, "the 3 jobs back on the broker", func() bool { return len(fc.queue) == 3 })
			st := p.Stat(ctx)
			if st.Consuming || st.Error == "" || !p.Paused() {
				t.Errorf("Stat while paused = %+v, want not consuming with a reason", st)
			}
			if err := p.Resume(ctx); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if s := fc.next(t); s.Outcome.Action != consumer.Ack {
					t.Errorf("after resume: %+v", s)
				}
			}
			if p.Paused() || p.Check() != nil {
				t.Errorf("after Resume: paused %v, check %v", p.Paused(), p.Check())
			}
			if withPauser && (pc.pauses.Load() != 1 || pc.resumes.Load() != 1) {
				t.Errorf("driver paused %d times, resumed %d times, want 1 and 1", pc.pauses.Load(), pc.resumes.Load())
			}
		})
	}
}

func TestPauseBeforeRun(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.push("j", 1, nil)
	p := New(Config{Name: "p"}, fc, execFunc(ackExec), nil)
	if err := p.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	start(t, p)
	select {
	case s := <-fc.settles:
		t.Fatalf("job %+v processed while paused", s)
	case <-time.After(30 * time.Millisecond):
	}
	if err := p.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := fc.next(t); s.Outcome.Action != consumer.Ack {
		t.Errorf("after resume: %+v", s)
	}
}

func TestStopWhilePaused(t *testing.T) {
	fc := newFakeConsumer(4)
	p := New(Config{Name: "p", Concurrency: 3}, fc, execFunc(ackExec), nil)
	r := start(t, p)
	waitFor(t, "running", func() bool { return p.Check() == nil })
	if err := p.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t); err != nil {
		t.Errorf("Run = %v", err)
	}
	if err := p.Resume(context.Background()); !errors.Is(err, ErrStopped) {
		t.Errorf("Resume after Stop = %v, want ErrStopped", err)
	}
}

func TestConsumerClosedUnderRun(t *testing.T) {
	fc := newFakeConsumer(1)
	p := New(Config{Name: "p", Concurrency: 2}, fc, execFunc(ackExec), nil)
	r := start(t, p)
	_ = fc.Close(context.Background())
	if err := r.wait(t); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Run = %v, want consumer.ErrClosed", err)
	}
	if err := p.Check(); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Check = %v, want consumer.ErrClosed", err)
	}
}

// flakyConsumer fails Receive until healed.
type flakyConsumer struct {
	*fakeConsumer
	broken atomic.Bool
}

var errBrokerDown = errors.New("broker down")

func (f *flakyConsumer) Receive(ctx context.Context) (*consumer.Delivery, error) {
	if f.broken.Load() {
		return nil, errBrokerDown
	}
	return f.fakeConsumer.Receive(ctx)
}

func TestReceiveErrorsAreRetried(t *testing.T) {
	fc := &flakyConsumer{fakeConsumer: newFakeConsumer(4)}
	fc.broken.Store(true)
	p := New(Config{Name: "p"}, fc, execFunc(ackExec), nil)
	start(t, p)
	waitFor(t, "receive error in Stat", func() bool {
		st := p.Stat(context.Background())
		return !st.Consuming && strings.Contains(st.Error, "broker down")
	})
	if err := p.Check(); !errors.Is(err, errBrokerDown) {
		t.Errorf("Check = %v, want the receive error", err)
	}
	fc.broken.Store(false)
	fc.push("j", 1, nil)
	if s := fc.next(t); s.Outcome.Action != consumer.Ack {
		t.Errorf("after recovery: %+v", s)
	}
	waitFor(t, "healthy again", func() bool { return p.Check() == nil })
}

// TestReceiveRecoveryClearsTheErrorOnAnIdleQueue: once the broker answers
// again, the pipeline turns healthy although no message arrives to end
// the retried Receive (an idle queue must not stay red forever).
func TestReceiveRecoveryClearsTheErrorOnAnIdleQueue(t *testing.T) {
	fc := &flakyConsumer{fakeConsumer: newFakeConsumer(4)}
	fc.broken.Store(true)
	p := New(Config{Name: "p"}, fc, execFunc(ackExec), nil)
	start(t, p)
	waitFor(t, "the receive error", func() bool { return errors.Is(p.Check(), errBrokerDown) })
	fc.broken.Store(false)
	waitFor(t, "healthy again with nothing to receive", func() bool { return p.Check() == nil })
	if st := p.Stat(context.Background()); !st.Consuming || st.Error != "" {
		t.Errorf("Stat = %+v, want consuming without error", st)
	}
}

func TestStatMergesDriver(t *testing.T) {
	fc := newFakeConsumer(4)
	pc := &pausingConsumer{fakeConsumer: fc}
	p := New(Config{Name: "p", Driver: "ignored", Priority: 7}, pc, execFunc(ackExec), nil)
	if st := p.Stat(context.Background()); st.Consuming || st.Error == "" {
		t.Errorf("Stat before Run = %+v, want not consuming", st)
	}
	start(t, p)
	fc.push("a", 1, nil)
	fc.next(t)
	fc.push("b", 1, nil)
	fc.push("c", 1, nil)
	waitFor(t, "acked counter", func() bool { return p.Stat(context.Background()).Acked >= 1 })
	st := p.Stat(context.Background())
	if st.Pipeline != "p" || st.Driver != "memory" || st.Queue != "q" || st.Priority != 7 ||
		st.Delayed != 5 || st.Reserved != 1 || st.Ready < 0 || !st.Consuming || st.Error != "" {
		t.Errorf("Stat = %+v", st)
	}
	down := errors.New("connection lost")
	pc.checkErr.Store(&down)
	if st := p.Stat(context.Background()); st.Consuming || !strings.Contains(st.Error, "connection lost") {
		t.Errorf("Stat with an unhealthy driver = %+v", st)
	}
}

type recordingObserver struct {
	mu    sync.Mutex
	seen  []consumer.Action
	fates []Fate
}

func (o *recordingObserver) Observe(pipeline string, f Fate) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if pipeline == "p" && f.Took >= 0 {
		o.seen = append(o.seen, f.Action)
		o.fates = append(o.fates, f)
	}
}

func TestObserverSeesEveryFate(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.push("j", 1, nil)
	obs := &recordingObserver{}
	ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		if jobContext(t, pl).Headers[frame.AttemptHeader][0] == "1" {
			return replyBody(t, frame.Reply{Type: frame.ReplyRequeue}), nil
		}
		return frame.Payload{}, nil
	})
	p := New(Config{Name: "p", Observer: obs}, fc, ex, nil)
	start(t, p)
	fc.next(t)
	fc.next(t)
	waitFor(t, "two observations", func() bool {
		obs.mu.Lock()
		defer obs.mu.Unlock()
		return len(obs.seen) == 2
	})
	obs.mu.Lock()
	defer obs.mu.Unlock()
	if obs.seen[0] != consumer.Requeue || obs.seen[1] != consumer.Ack {
		t.Errorf("observed %v, want [requeue ack]", obs.seen)
	}
	if st := p.Stat(context.Background()); st.Requeued != 1 || st.Acked != 1 {
		t.Errorf("Stat = %+v", st)
	}
}

// TestObserverTellsRunsFromFailures: a job that ran has its exec time and
// is failed only when the worker failed it (an ERROR frame, exec_ttl, a bad
// reply); a job that reached no worker (Release) has neither.
func TestObserverTellsRunsFromFailures(t *testing.T) {
	cases := []struct {
		name   string
		reply  frame.Payload
		err    error
		action consumer.Action
		failed bool
	}{
		{"ack", frame.Payload{}, nil, consumer.Ack, false},
		{"error frame", frame.Payload{}, jobErr("boom"), consumer.Retry, true},
		{"exec_ttl", frame.Payload{}, execTimeoutErr(), consumer.Retry, true},
		{"bad reply", frame.Payload{Body: []byte("not json")}, nil, consumer.Retry, true},
		{"no worker", frame.Payload{}, noWorkerErr(), consumer.Release, false},
		{"pool closed", frame.Payload{}, poolClosedErr(), consumer.Release, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fc := newFakeConsumer(4)
			fc.holdReleased = true
			fc.push("j", 1, nil)
			obs := &recordingObserver{}
			ex := execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
				time.Sleep(time.Millisecond)
				return c.reply, c.err
			})
			p := New(Config{Name: "p", Observer: obs, Rand: fixedRand}, fc, ex, nil)
			start(t, p)
			fc.next(t)
			waitFor(t, "an observation", func() bool {
				obs.mu.Lock()
				defer obs.mu.Unlock()
				return len(obs.fates) >= 1
			})
			obs.mu.Lock()
			f := obs.fates[0]
			obs.mu.Unlock()
			if f.Action != c.action || f.Failed != c.failed {
				t.Fatalf("fate %+v, want action %v failed %v", f, c.action, c.failed)
			}
			if ran := c.action != consumer.Release; ran != (f.Exec >= time.Millisecond) || f.Took < f.Exec {
				t.Fatalf("fate %+v: exec time wrong for a job that ran=%v", f, ran)
			}
		})
	}
}

// lateConsumer's Receive waits for its context to end and then returns
// the delivery it holds anyway: a driver that had a message in hand as
// Pause cut its Receive short.
type lateConsumer struct {
	*fakeConsumer
	receiving chan struct{}
}

func (c *lateConsumer) Receive(ctx context.Context) (*consumer.Delivery, error) {
	select {
	case c.receiving <- struct{}{}:
	default:
	}
	<-ctx.Done()
	select {
	case d := <-c.queue:
		return d, nil
	default:
		return nil, ctx.Err()
	}
}

// TestJobReceivedAsPauseCutsReceiveIsReleasedUnstarted: a job that a
// Receive returns after Pause cancelled it goes back to the broker
// without reaching a worker or spending an attempt.
func TestJobReceivedAsPauseCutsReceiveIsReleasedUnstarted(t *testing.T) {
	fc := newFakeConsumer(4)
	fc.holdReleased = true
	lc := &lateConsumer{fakeConsumer: fc, receiving: make(chan struct{}, 1)}
	var ran atomic.Int32
	p := New(Config{Name: "p"}, lc, execFunc(func(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
		ran.Add(1)
		return ackExec(ctx, pl)
	}), nil)
	start(t, p)
	<-lc.receiving
	fc.push("late", 1, nil)
	if err := p.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := fc.next(t)
	if s.ID != "late" || s.Outcome.Action != consumer.Release || s.Outcome.Delay != 0 || s.Attempt != 1 {
		t.Errorf("settled %+v, want late released at once on attempt 1", s)
	}
	if n := ran.Load(); n != 0 {
		t.Errorf("the worker ran %d jobs while pausing, want 0", n)
	}
}
