package kafkajobs

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

var _ consumer.OldestReadyReporter = (*Driver)(nil)

// heldScanMax bounds how many of a partition's records in kgo's buffer
// OldestReady looks at past delayed ones (see OldestReady).
const heldScanMax = 256

// OldestReady returns the enqueue time (Delivery.Enqueued: the record's
// timestamp, or the end of its delay or in-place retry) of the oldest
// record waiting to be received among those the driver has fetched: held
// in kgo's buffer or in the driver's own, and not handed out. Records
// held back by ordering (behind a record that is out, or waiting for an
// in-place retry or a dead-letter or retry copy) wait too, and so do
// records nobody receives (a paused pipeline, busy slots); records
// handed out, settled, or whose delay or in-place retry has not passed
// do not. It implements consumer.OldestReadyReporter, and returns false
// when no fetched record waits, on a push-only pipeline and once Close
// began. It never calls the broker.
//
// What it does not see: records not fetched yet, at the broker past what
// kgo buffered (a partition whose records are all still there counts for
// nothing, so the age is a lower bound when the fetched records are not
// the oldest, and false may come while records wait at the broker).
// Within a partition the records are taken to be in timestamp order (as
// with LogAppendTime, or CreateTime from producers whose clocks agree):
// it looks at each partition's records from its head up to the first one
// without a delay or in-place retry, so a record dated earlier than one
// before it in its partition is missed; in kgo's buffer it looks past at
// most heldScanMax delayed records of a partition. A record whose
// timestamp is unknown (not after the Unix epoch) is not counted.
//
// The cost is the records it looks at, under the driver's lock: for each
// partition, those out or settled ahead of its first waiting record, and
// the delayed or retried ones.
func (d *Driver) OldestReady() (time.Time, bool) {
	c := d.cons
	if c == nil {
		return time.Time{}, false
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return time.Time{}, false
	}
	var oldest time.Time
	consider := func(at time.Time) {
		if at.UnixMilli() > 0 && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
	}
	// headed: partitions whose local records settle their oldest; kgo's
	// records of them are later ones.
	var headed map[topicPartition]bool
	for _, ps := range c.order {
		at, complete := ps.oldestWaiting(now)
		consider(at)
		if complete {
			if headed == nil {
				headed = make(map[topicPartition]bool, len(c.order))
			}
			headed[ps.tp] = true
		}
	}
	c.kgoBuf.mu.Lock()
	for tp, bp := range c.kgoBuf.parts {
		if headed[tp] {
			continue
		}
		consider(oldestHeld(bp.held.live(), now))
	}
	c.kgoBuf.mu.Unlock()
	return oldest, !oldest.IsZero()
}

// oldestWaiting returns the earliest enqueue time of the records of ps
// that wait to be handed out, looking from the head up to the first
// pending record without a readyAt (the records after it are taken to be
// later, see OldestReady); complete reports that such a record was found.
// The zero time when none waits. Called with consumerState.mu held.
func (ps *partState) oldestWaiting(now time.Time) (oldest time.Time, complete bool) {
	for _, e := range ps.entries {
		if e.state != statePending || e.readyAt.After(now) {
			continue
		}
		if at := enqueued(e); at.UnixMilli() > 0 && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
		if e.readyAt.IsZero() {
			return oldest, true
		}
	}
	return oldest, false
}

// oldestHeld is oldestWaiting for records in kgo's buffer, front first:
// the earliest enqueue time of those that are due, up to the first
// without a delay (and at most heldScanMax records).
func oldestHeld(recs []*kgo.Record, now time.Time) time.Time {
	var oldest time.Time
	for i, r := range recs {
		if i == heldScanMax {
			break
		}
		at, delayed := recordReady(r)
		if at.After(now) {
			continue
		}
		if at.UnixMilli() > 0 && (oldest.IsZero() || at.Before(oldest)) {
			oldest = at
		}
		if !delayed {
			break
		}
	}
	return oldest
}

// recordReady returns when r becomes ready as ingest would date it: its
// timestamp, or its rr_delay_until when later; delayed reports that r
// carries that header.
func recordReady(r *kgo.Record) (at time.Time, delayed bool) {
	at = r.Timestamp
	for _, h := range r.Headers {
		if h.Key != hdrDelayUntil {
			continue
		}
		if ms, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
			delayed = true
			if until := time.UnixMilli(ms); until.After(r.Timestamp) {
				at = until
			} else {
				at = r.Timestamp
			}
		}
	}
	return at, delayed
}
