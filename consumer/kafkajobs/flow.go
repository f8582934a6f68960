package kafkajobs

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Flow control: how many records of a partition are held locally.
//
// A partition holds about partitionBuffer records locally (a poll or two
// of pollBatch may come on top). kgo can only pause a partition, and a
// resumed partition is fetched again only once the fetch request already
// waiting at the broker returns: when every other partition on that
// broker is caught up, that is a long poll of FetchMaxWait. Pausing a
// busy partition each time its buffer filled and resuming it when the
// buffer drained therefore stalled it every few hundred records.
//
// So a full partition is normally not paused: the poller does not poll
// while a full partition has records in kgo's buffer (there is no room),
// and polls again once it drains below the bound. kgo holds the records
// meanwhile and fetches nothing more from that broker until they are
// taken. A full partition is paused (kgo then drops its buffered records
// and fetches them again later) only when holding the poll back would
// starve others:
//   - kgo's buffer holds records of the full partition and of another
//     one that can take records (a poll would take them in kgo's order),
//   - another partition that can take records has records at the broker
//     and the next poll would not drain kgo's buffer anyway (see
//     drainsNext). While a full partition holds the poll back, kgo
//     fetches nothing, so the poller asks the brokers for the other
//     partitions' end offsets every probeInterval; or
//   - the full partition made no progress (nothing handed out or settled)
//     for stallAfter: its head job runs long, and the others must not
//     wait for it (new records of idle partitions are seen only by
//     polling).
//
// A paused partition is resumed when it is below half of the bound, or,
// unless it stalls, when nobody waits for it any more or the next poll
// drains kgo's buffer: resuming before that poll puts the partition into
// the next fetch request, which then returns at once instead of waiting
// at the broker for the others.
const (
	// stallAfter is how long a full partition may make no progress before
	// it is paused so that the others are polled past it.
	stallAfter = time.Second
	// probeInterval is how often the end offsets of the other partitions
	// are asked while a full partition holds the poll back (kgo fetches
	// nothing meanwhile, so their new records would go unseen).
	probeInterval = 250 * time.Millisecond
	// fetchMaxWait is how long the broker holds a fetch request that has
	// nothing to return (kgo's default is 5s). It bounds the delay of a
	// partition resumed while such a fetch waits, which the rules above
	// keep rare: a partition that stalled first, or one paused to let
	// another's records through when those were the last ones and kgo
	// sent its next fetch before the resume.
	fetchMaxWait = 500 * time.Millisecond
)

// lag is the number of records of ps known to be at the broker or in
// kgo's buffer and not polled yet: the high watermark (of the last fetch
// or probe) past the next offset expected, or, before any record came,
// past the committed offset, else past the end offset the first probe
// saw; 0 when unknown.
func (ps *partState) lag() int64 {
	pos := ps.next
	if pos < 0 {
		pos = ps.committed
	}
	if pos < 0 && ps.hasBase {
		pos = ps.probeBase
	}
	if !ps.hasHWM || pos < 0 || ps.hwm <= pos {
		return 0
	}
	return ps.hwm - pos
}

func (ps *partState) full() bool { return len(ps.entries) >= partitionBuffer }

// stalled reports whether ps made no progress for stallAfter.
func (ps *partState) stalled(now time.Time) bool { return now.Sub(ps.progress) >= stallAfter }

// flowPlan is what flowLocked decided.
type flowPlan struct {
	pause, resume map[string][]int32
	// room is false while a full, unpaused partition has records in kgo's
	// buffer: the poller waits.
	room bool
	// recheck is when a full, unpaused partition counts as stalled (zero
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
	buffered := c.kgoBuf.counts()
	// waitedFor: another partition than ps that can take records has
	// some in kgo's buffer or at the broker.
	waitedFor := func(ps *partState) bool {
		for _, q := range c.parts {
			if q != ps && !q.paused && !q.full() && (buffered[q.tp] > 0 || q.lag() > 0) {
				return true
			}
		}
		return false
	}
	// othersBuffered: kgo holds records of another partition than ps
	// that can take records.
	othersBuffered := func(ps *partState) bool {
		for _, q := range c.parts {
			if q != ps && !q.paused && !q.full() && buffered[q.tp] > 0 {
				return true
			}
		}
		return false
	}
	// drainsNext: the next poll takes everything kgo holds for the
	// unpaused partitions but ps, and none of them has more at the
	// broker: kgo's next fetch request goes out right after that poll,
	// and would wait at the broker unless ps is in it.
	drainsNext := func(ps *partState) bool {
		total := 0
		for _, q := range c.parts {
			if q == ps || q.paused {
				continue
			}
			w := buffered[q.tp]
			if q.lag() > int64(w) {
				return false
			}
			total += w
		}
		return total <= pollBatch
	}
	var p flowPlan
	for _, ps := range c.order {
		tp := ps.tp
		switch {
		case ps.paused:
			if len(ps.entries) < partitionBuffer/2 || (!ps.stalled(now) && (!waitedFor(ps) || drainsNext(ps))) {
				ps.paused = false
				c.npaused--
				addTP(&p.resume, tp)
			}
		case ps.full():
			// Records of others behind this partition's in kgo's buffer
			// are reached only by dropping its own (pausing it).
			hogs := buffered[ps.tp] > 0 && othersBuffered(ps)
			if ps.stalled(now) || hogs || (waitedFor(ps) && !drainsNext(ps)) {
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
		if buffered[ps.tp] > 0 {
			p.room = false
		}
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
// full partition holds the poll back, until c.roomKick or recheck.
func (d *Driver) pollPlan(now time.Time) (want bool, p flowPlan) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.waiters == 0 {
		return false, p
	}
	if _, e := c.pickLocked(now); e != nil {
		return false, p
	}
	return true, d.applyFlowLocked(now)
}

// kickRoomLocked wakes a poller waiting for room (a full partition
// drained below the bound or went away).
func (c *consumerState) kickRoomLocked() {
	select {
	case c.roomKick <- struct{}{}:
	default:
	}
}

// pollLoop fetches records while a Receive waits, nothing local can be
// handed out and there is room (see flowLocked). It runs until ctx is
// done; Close owns it.
func (d *Driver) pollLoop(ctx context.Context) {
	c := d.cons
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var lastProbe time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.demand:
		}
		for ctx.Err() == nil {
			want, plan := d.pollPlan(time.Now())
			if !want {
				break
			}
			if !plan.room {
				if time.Since(lastProbe) >= probeInterval {
					lastProbe = time.Now()
					d.probeEnds(ctx)
					continue
				}
				// Wait for a settlement (room), another partition's
				// records (kick), the next probe or the full partition
				// stalling.
				wake := lastProbe.Add(probeInterval)
				if !plan.recheck.IsZero() && plan.recheck.Before(wake) {
					wake = plan.recheck
				}
				timer.Reset(time.Until(wake))
				tick := timer.C
				select {
				case <-ctx.Done():
				case <-c.roomKick:
				case <-c.kgoBuf.kick:
				case <-tick:
				}
				timer.Stop()
				continue
			}
			fetches := d.client.PollRecords(ctx, pollBatch)
			d.ingest(fetches)
			d.resizeFetch()
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

// probeTimeout bounds one end-offset probe.
const probeTimeout = time.Second

// probeEnds asks the brokers for the end offsets (high watermarks) of the
// partitions that could take records (neither paused nor full), so that
// flowLocked sees their lag while kgo fetches nothing. A failed probe
// changes nothing: the stall rule still lets the others through.
func (d *Driver) probeEnds(ctx context.Context) {
	c := d.cons
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	fromStart := d.cfg.ConsumerOptions.ConsumerOffset.Type == OffsetAtStart
	asked := make(map[topicPartition]bool) // asked for the earliest offset
	c.mu.Lock()
	topics := make(map[string]int)
	for _, ps := range c.order {
		tp := ps.tp
		if ps.paused || ps.full() || ps.revoking {
			continue
		}
		i, ok := topics[tp.topic]
		if !ok {
			i = len(req.Topics)
			topics[tp.topic] = i
			rt := kmsg.NewListOffsetsRequestTopic()
			rt.Topic = tp.topic
			req.Topics = append(req.Topics, rt)
		}
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = tp.partition
		rp.Timestamp = -1 // latest
		if ps.next < 0 && ps.committed < 0 && !ps.hasBase && fromStart {
			// Nothing fetched or committed: the group starts at the
			// log start, so that is where this partition's lag begins.
			rp.Timestamp = -2 // earliest
			asked[tp] = true
		}
		rp.CurrentLeaderEpoch = -1
		req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
	}
	c.mu.Unlock()
	if len(req.Topics) == 0 {
		return
	}
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	resp, err := req.RequestWith(pctx, d.client)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				continue
			}
			tp := topicPartition{t.Topic, p.Partition}
			ps := c.parts[tp]
			if ps == nil {
				continue
			}
			if ps.next < 0 && ps.committed < 0 && !ps.hasBase {
				// Nothing fetched or committed yet: lag counts from the
				// log start (a group starting there), else from the end
				// seen now (records before it were in kgo's last fetch).
				ps.probeBase, ps.hasBase = p.Offset, true
			}
			if asked[tp] {
				continue
			}
			if !ps.hasHWM || p.Offset > ps.hwm {
				ps.hwm, ps.hasHWM = p.Offset, true
			}
		}
	}
}
