package kafkajobs

import (
	"context"
	"time"
)

// Flow control: how many records of a partition are held locally.
//
// A partition holds at most partitionBuffer records (+ one poll) locally.
// kgo can only pause a partition, and a resumed partition is fetched
// again only once the fetch request already waiting at the broker
// returns: when every other partition on that broker is caught up, that
// is a long poll of FetchMaxWait. Pausing a busy partition each time its
// buffer fills and resuming it when the buffer drains therefore stalled
// it for seconds every few hundred records.
//
// So a full partition is normally not paused: the poller simply does not
// poll while a partition it could get records for is full (there is no
// room), and polls again as soon as the partition drains below the bound.
// kgo holds the records meanwhile and fetches nothing more from that
// broker until they are taken. A full partition is paused only when
// holding the poll back would starve others:
//   - another partition that can take records has at least pauseLag
//     records waiting at the broker, or
//   - the full partition made no progress (nothing handed out or
//     settled) for stallAfter: its head job runs long, and other
//     partitions must not wait for it (new records of idle partitions are
//     only seen by polling).
//
// A paused partition is resumed once it has room again and either it is
// below half of the bound or neither reason holds any more (no other
// partition has pollBatch records waiting, and it is progressing).
// Resuming while the other partitions still have records at the broker
// means the next fetch request includes the resumed partition before it
// can turn into a long poll.
const (
	// stallAfter is how long a full partition may make no progress before
	// it is paused so that the others are polled past it.
	stallAfter = time.Second
	// pauseLag is the backlog (records at the broker, not yet polled) of
	// another partition for which a full partition is paused.
	pauseLag = partitionBuffer / 2
	// resumeLag: a paused partition is resumed early once no other
	// partition has this many records waiting at the broker.
	resumeLag = pollBatch
	// fetchMaxWait is how long the broker holds a fetch request that has
	// nothing to return (kgo's default is 5s). It bounds the delay of a
	// partition resumed while a long poll is waiting, which the rules
	// above make rare.
	fetchMaxWait = time.Second
)

// lag is the number of records of ps known to be at the broker and not
// polled yet (from the high watermark of the last fetch); 0 when unknown.
func (ps *partState) lag() int64 {
	if !ps.hasHWM || ps.next < 0 || ps.hwm <= ps.next {
		return 0
	}
	return ps.hwm - ps.next
}

func (ps *partState) full() bool { return len(ps.entries) >= partitionBuffer }

// stalled reports whether ps made no progress for stallAfter.
func (ps *partState) stalled(now time.Time) bool { return now.Sub(ps.progress) >= stallAfter }

// othersLagLocked reports whether a partition other than ps that can take
// records (neither paused nor full) has at least min records waiting at
// the broker.
func (c *consumerState) othersLagLocked(ps *partState, min int64) bool {
	for _, q := range c.parts {
		if q != ps && !q.paused && !q.full() && q.lag() >= min {
			return true
		}
	}
	return false
}

// flowPlan is what flowLocked decided.
type flowPlan struct {
	pause, resume map[string][]int32
	// room is false while a partition that would get polled records is
	// full: the poller waits.
	room bool
	// recheck is when an unpaused full partition counts as stalled (zero
	// if none): the poller must decide again then.
	recheck time.Time
}

func addTP(m *map[string][]int32, tp topicPartition) {
	if *m == nil {
		*m = make(map[string][]int32)
	}
	(*m)[tp.topic] = append((*m)[tp.topic], tp.partition)
}

// flowLocked applies the rules of the comment above to every partition
// and returns the pauses and resumes to hand to kgo.
func (c *consumerState) flowLocked(now time.Time) flowPlan {
	var p flowPlan
	for _, tp := range c.order {
		ps := c.parts[tp]
		switch {
		case ps.paused:
			if !ps.full() && (len(ps.entries) < partitionBuffer/2 || (!ps.stalled(now) && !c.othersLagLocked(ps, resumeLag))) {
				ps.paused = false
				c.npaused--
				addTP(&p.resume, tp)
			}
		case ps.full():
			if ps.stalled(now) || c.othersLagLocked(ps, pauseLag) {
				ps.paused = true
				c.npaused++
				addTP(&p.pause, tp)
			}
		}
	}
	p.room = true
	for _, ps := range c.parts {
		if ps.paused || !ps.full() {
			continue
		}
		p.room = false
		if at := ps.progress.Add(stallAfter); p.recheck.IsZero() || at.Before(p.recheck) {
			p.recheck = at
		}
	}
	return p
}

// applyFlowLocked runs flowLocked and hands its pauses and resumes to
// kgo (which calls nothing of ours back).
func (d *Driver) applyFlowLocked(now time.Time) flowPlan {
	p := d.cons.flowLocked(now)
	if p.pause != nil {
		d.client.PauseFetchPartitions(p.pause)
	}
	if p.resume != nil {
		d.client.ResumeFetchPartitions(p.resume)
	}
	return p
}

// pollPlan reports whether the poller should poll now: want is false when
// no Receive waits or one can be served locally; room is false while a
// full partition holds the poll back, until a change (changed is closed)
// or recheck.
func (d *Driver) pollPlan(now time.Time) (want bool, p flowPlan, changed <-chan struct{}) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.waiters == 0 {
		return false, p, nil
	}
	if _, e := c.pickLocked(now); e != nil {
		return false, p, nil
	}
	return true, d.applyFlowLocked(now), c.changed
}

// pollLoop fetches records while a Receive waits, nothing local can be
// handed out and there is room (see flowLocked). It runs until ctx is
// done; Close owns it.
func (d *Driver) pollLoop(ctx context.Context) {
	c := d.cons
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.demand:
		}
		for ctx.Err() == nil {
			want, plan, changed := d.pollPlan(time.Now())
			if !want {
				break
			}
			if !plan.room {
				var tick <-chan time.Time
				if !plan.recheck.IsZero() {
					timer.Reset(time.Until(plan.recheck))
					tick = timer.C
				}
				select {
				case <-ctx.Done():
				case <-changed:
				case <-tick:
				}
				timer.Stop()
				continue
			}
			fetches := d.client.PollRecords(ctx, pollBatch)
			d.ingest(fetches)
			d.client.AllowRebalance()
			if fetches.IsClientClosed() {
				return
			}
			if fetches.NumRecords() == 0 && ctx.Err() == nil {
				// Only errors: do not spin on a failing partition.
				t := time.NewTimer(emptyPollBackoff)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		}
	}
}
