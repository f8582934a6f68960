package amqpjobs

import (
	"context"
	"errors"
	"maps"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// maxCountedDelayQueues bounds the passive declares one Stat call makes for
// delay queues; with more in use, Delayed is reported as unknown (-1).
const maxCountedDelayQueues = 256

// delayGrace is how long after its messages' TTL a delay queue is still
// counted: a message may reach the queue a little after its publish began.
const delayGrace = 5 * time.Second

// Stat reports the broker-side numbers: Ready is the message count of the
// queue (a passive queue.declare: deliveries held by consumers are not in
// it); Delayed is the number of messages in the delay queues this driver
// published to (retries and pushes with a delay), each counted until its
// messages' TTL has passed; Active is the deliveries handed out and not
// settled. Delay queues used before this driver started, or only by other
// supervisors, are not counted. A push-only pipeline reports Ready -1.
// While disconnected Stat returns an error wrapping ErrDisconnected.
func (d *Driver) Stat(ctx context.Context) (consumer.Stat, error) {
	st := consumer.Stat{
		Pipeline:  d.name,
		Driver:    DriverName,
		Queue:     d.cfg.Queue,
		Priority:  d.cfg.Priority,
		Ready:     -1,
		Delayed:   -1,
		Active:    max(d.outstanding.Load(), 0),
		Consuming: false,
	}
	if err := d.Check(); err != nil {
		st.Error = err.Error()
		return st, err
	}
	d.consumeMu.Lock()
	st.Consuming = !d.paused && d.cfg.Consumes()
	d.consumeMu.Unlock()
	s, err := d.waitSession(ctx)
	if err != nil {
		return st, err
	}
	if d.cfg.Consumes() {
		n, err := s.queueDepth(d.cfg.Queue)
		if err != nil {
			st.Error = err.Error()
			return st, err
		}
		st.Ready = int64(n)
	}
	delayed, err := d.countDelayed(s, time.Now())
	if err != nil {
		st.Error = err.Error()
		return st, err
	}
	st.Delayed = delayed
	return st, nil
}

// countDelayed sums the messages of the delay queues in use at now, or
// returns -1 when there are more than maxCountedDelayQueues of them. A
// delay queue that no longer exists (it expired) holds nothing.
func (d *Driver) countDelayed(s *session, now time.Time) (int64, error) {
	names := d.delays.inUse(now)
	if len(names) > maxCountedDelayQueues {
		return -1, nil
	}
	var total int64
	for _, name := range names {
		n, err := s.queueDepth(name)
		var ae *amqp.Error
		switch {
		case errors.As(err, &ae) && ae.Code == amqp.NotFound:
			d.delays.forget(name)
		case err != nil:
			return -1, err
		default:
			total += int64(n)
		}
	}
	return total, nil
}

// delayQueues remembers the delay queues a driver published to and until
// when each may hold its messages.
type delayQueues struct {
	mu    sync.Mutex
	until map[string]time.Time
}

// add records a publish at now to the delay queue name whose messages wait
// ttl.
func (q *delayQueues) add(name string, ttl time.Duration, now time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.until == nil {
		q.until = map[string]time.Time{}
	}
	if t := now.Add(ttl + delayGrace); t.After(q.until[name]) {
		q.until[name] = t
	}
}

// inUse returns, sorted, the delay queues that may still hold messages at
// now, forgetting the others.
func (q *delayQueues) inUse(now time.Time) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	for name, t := range q.until {
		if !now.Before(t) {
			delete(q.until, name)
		}
	}
	return slices.Sorted(maps.Keys(q.until))
}

// forget drops a delay queue that no longer exists.
func (q *delayQueues) forget(name string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.until, name)
}
