package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
)

// commitLog is a driver's group commit in miniature: outcomes become
// final when commit runs, with its error.
type commitLog struct {
	mu      sync.Mutex
	pending []func(error)
}

func (c *commitLog) register(fn func(error)) {
	c.mu.Lock()
	c.pending = append(c.pending, fn)
	c.mu.Unlock()
}

func (c *commitLog) waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func (c *commitLog) commit(err error) {
	c.mu.Lock()
	fns := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, fn := range fns {
		fn(err)
	}
}

// countingObserver counts the fates it is told.
type countingObserver struct {
	mu    sync.Mutex
	fates int
}

func (o *countingObserver) Observe(string, Fate) {
	o.mu.Lock()
	o.fates++
	o.mu.Unlock()
}

func (o *countingObserver) count() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.fates
}

// A job whose outcome a driver makes final later (on disk) is counted,
// observed and logged as settled only then; an outcome the driver could
// not make final is not counted.
func TestOutcomeReportedOnceFinal(t *testing.T) {
	fc := newFakeConsumer(8)
	var log commitLog
	fc.whenFinal = log.register
	for i := range 4 {
		fc.push(fmt.Sprint(i), 1, nil)
	}
	obs := &countingObserver{}
	p := New(Config{Name: "p", Observer: obs}, fc, execFunc(ackExec), nil)
	start(t, p)
	for range 4 {
		if s := fc.next(t); s.Outcome.Action != consumer.Ack {
			t.Fatalf("settled %+v, want ack", s)
		}
	}
	waitFor(t, "4 outcomes waiting to be final", func() bool { return log.waiting() == 4 })
	if st := p.Stat(context.Background()); st.Acked != 0 || obs.count() != 0 {
		t.Fatalf("before the commit: acked %d, %d fates observed; want none", st.Acked, obs.count())
	}
	log.commit(nil)
	if st := p.Stat(context.Background()); st.Acked != 4 || obs.count() != 4 {
		t.Fatalf("after the commit: acked %d, %d fates observed; want 4", st.Acked, obs.count())
	}

	fc.push("lost", 1, nil)
	fc.next(t)
	waitFor(t, "the outcome waiting to be final", func() bool { return log.waiting() == 1 })
	log.commit(errors.New("disk full"))
	if st := p.Stat(context.Background()); st.Acked != 4 || obs.count() != 5 {
		t.Fatalf("after a failed commit: acked %d, %d fates observed; want 4 acked, 5 observed", st.Acked, obs.count())
	}
}
