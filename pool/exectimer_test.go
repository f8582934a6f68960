package pool

import (
	"sync/atomic"
	"testing"
	"time"
)

func newTestExecTimer() (*execTimer, chan time.Time) {
	fired := make(chan time.Time, 4)
	return &execTimer{expire: func() { fired <- time.Now() }}, fired
}

func TestExecTimerEarlierDeadlineRearms(t *testing.T) {
	e, fired := newTestExecTimer()
	defer e.stop()
	e.set(time.Now().Add(time.Hour))
	e.set(time.Time{})
	t0 := time.Now()
	e.set(t0.Add(50 * time.Millisecond)) // earlier than the armed hour
	select {
	case at := <-fired:
		if d := at.Sub(t0); d < 45*time.Millisecond {
			t.Fatalf("expired after %v, before the 50ms deadline", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a 50ms deadline set after a 1h one never expired")
	}
}

func TestExecTimerClearedOrStoppedDoesNotExpire(t *testing.T) {
	e, fired := newTestExecTimer()
	e.set(time.Now().Add(30 * time.Millisecond))
	e.set(time.Time{}) // the job ended in time
	time.Sleep(100 * time.Millisecond)
	e.set(time.Now().Add(30 * time.Millisecond))
	e.stop()
	time.Sleep(100 * time.Millisecond)
	e.set(time.Now().Add(-time.Second)) // after stop: nothing
	select {
	case <-fired:
		t.Fatal("expired with no job running, or after stop")
	default:
	}
}

func TestExecTimerPassedDeadlineExpiresAtOnce(t *testing.T) {
	e, fired := newTestExecTimer()
	defer e.stop()
	e.set(time.Now().Add(-time.Millisecond))
	select {
	case <-fired:
	default:
		t.Fatal("a passed deadline did not expire at once")
	}
}

// TestExecTimerNoExpiryAfterClear: once set(time.Time{}) returned (the job
// replied), its expiry never lands: every expire call happens while the
// job whose deadline passed is still running. Jobs here reply right at
// their deadline, so the timer's expiry races with the reply.
func TestExecTimerNoExpiryAfterClear(t *testing.T) {
	var running atomic.Bool
	var jobDL atomic.Int64
	var late, fired atomic.Int64
	e := &execTimer{expire: func() {
		fired.Add(1)
		if !running.Load() || time.Now().UnixNano() < jobDL.Load() {
			late.Add(1)
		}
	}}
	defer e.stop()
	for end := time.Now().Add(time.Second); time.Now().Before(end) && late.Load() == 0; {
		dl := time.Now().Add(20 * time.Microsecond)
		jobDL.Store(dl.UnixNano())
		running.Store(true)
		e.set(dl)
		for time.Now().Before(dl) { // the job replies right at its deadline
		}
		e.set(time.Time{})
		running.Store(false)
	}
	if n := late.Load(); n > 0 {
		t.Fatalf("expire ran %d times with no job running (of %d expiries)", n, fired.Load())
	}
}
