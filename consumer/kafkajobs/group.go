package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// commitInterval is how often the committer retries commits that failed
// (successful settlements trigger a commit, see commitGap).
const commitInterval = time.Second

// commitGap is the least time between two commits of the committer: a
// settlement after a quiet spell is committed at once, settlements that
// follow one another closely are committed together at most every
// commitGap instead of one commit request each. What is committed is the
// same contiguous done prefix either way; rebalances and Close commit at
// once.
const commitGap = 5 * time.Millisecond

// emptyPollBackoff is the pause after a poll that returned only errors.
const emptyPollBackoff = 100 * time.Millisecond

// ingest files polled records into their partitions and applies the flow
// control rules (flow.go) to the new state.
func (d *Driver) ingest(fetches kgo.Fetches) {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	var fetchErr error
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, kgo.ErrClientClosed) {
			return
		}
		fetchErr = fmt.Errorf("kafkajobs: fetch %s[%d]: %w", topic, partition, err)
		d.log.Error("fetch failed", "topic", topic, "partition", partition, "err", err)
	})
	got := false
	now := time.Now()
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if ftp.Topic == "" {
			return
		}
		tp := topicPartition{ftp.Topic, ftp.Partition}
		ps := c.parts[tp]
		if ps == nil {
			ps = &partState{tp: tp, next: -1, progress: now, committed: -1}
			c.parts[tp] = ps
			c.rebuildOrderLocked()
		}
		if ftp.Err == nil {
			got = true
			ps.hwm, ps.hasHWM = ftp.HighWatermark, true
		}
		if len(ps.entries) == 0 && len(ftp.Records) > 0 {
			ps.progress = now
		}
		skipped := false
		// One allocation for the entries of this poll; the slab's
		// capacity is fixed, so the pointers stay valid.
		slab := make([]entry, 0, len(ftp.Records))
		for _, r := range ftp.Records {
			if ps.next >= 0 && r.Offset < ps.next {
				continue
			}
			ps.next = r.Offset + 1
			m := readRecord(r, c.jobHeader, c.priority)
			slab = append(slab, entry{
				rec: r, meta: m, attempt: m.attempt,
				readyAt: m.delayUntil, deferred: !m.delayUntil.IsZero(),
			})
			e := &slab[len(slab)-1]
			if inRanges(ps.skip, r.Offset) {
				// Settled by an earlier owner past its commit point.
				e.state, skipped = stateDone, true
			}
			if !e.readyAt.IsZero() {
				ps.timed++
			}
			ps.entries = append(ps.entries, e)
		}
		c.kgoBuf.take(tp, ftp.Records)
		if skipped {
			ps.advance()
			ps.dirty = true
			select {
			case c.commitKick <- struct{}{}:
			default:
			}
		}
	})
	d.applyFlowLocked(now)
	switch {
	case fetchErr != nil:
		c.fetchErr = fetchErr
	case got:
		c.fetchErr = nil
	}
	c.notifyLocked()
}

// commitLoop commits the done prefixes whenever a settlement moved one,
// and retries failed commits every commitInterval. Close owns it.
func (d *Driver) commitLoop(ctx context.Context) {
	t := time.NewTicker(commitInterval)
	defer t.Stop()
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	defer gap.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.cons.commitKick:
		case <-t.C:
		}
		if wait := commitGap - time.Since(last); wait > 0 {
			// Let the settlements of the next few milliseconds join
			// this commit.
			gap.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-gap.C:
			}
		}
		last = time.Now()
		if err := d.commitNow(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("commit failed; will retry", "err", err)
		}
	}
}

// commitNow commits every partition whose commit point moved since its
// last commit.
func (d *Driver) commitNow(ctx context.Context) error {
	c := d.cons
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	c.mu.Lock()
	points := make(map[topicPartition]commitPoint)
	var taken []*partState
	for tp, ps := range c.parts {
		if !ps.dirty {
			continue
		}
		if cp, ok := ps.commitPointLocked(); ok {
			points[tp] = cp
			ps.dirty = false
			taken = append(taken, ps)
		}
	}
	c.mu.Unlock()
	if len(taken) == 0 {
		return nil
	}
	err := commit(ctx, d.client, points)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commitErr = err
	if err != nil {
		for _, ps := range taken {
			if !ps.revoked {
				ps.dirty = true
			}
		}
	}
	return err
}

// commit sends the commit points (offsets plus done-offset metadata) and
// returns the request error or every partition error of the response.
func commit(ctx context.Context, cl *kgo.Client, points map[topicPartition]commitPoint) error {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	for tp, cp := range points {
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = make(map[int32]kgo.EpochOffset)
		}
		offsets[tp.topic][tp.partition] = cp.offset
	}
	withMeta := kgo.PreCommitFnContext(ctx, func(req *kmsg.OffsetCommitRequest) error {
		for i := range req.Topics {
			t := &req.Topics[i]
			for j := range t.Partitions {
				p := &t.Partitions[j]
				meta := points[topicPartition{t.Topic, p.Partition}].meta
				p.Metadata = &meta
			}
		}
		return nil
	})
	var errs []error
	cl.CommitOffsetsSync(withMeta, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					errs = append(errs, fmt.Errorf("%s[%d]: %w", t.Topic, p.Partition, err))
				}
			}
		}
	})
	if err := joinLine(errs...); err != nil {
		return fmt.Errorf("kafkajobs: commit: %w", err)
	}
	return nil
}

// onAssigned starts local state for newly assigned partitions, with the
// offsets that the commit metadata lists as already done (see
// commitpoint.go) and the committed offsets.
func (d *Driver) onAssigned(ctx context.Context, cl *kgo.Client, assigned map[string][]int32) {
	done, committed, err := d.fetchDone(ctx, cl, assigned)
	if err != nil {
		d.log.Warn("reading done offsets of assigned partitions failed; finished jobs past the commit may run again", "err", err)
	}
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, parts := range assigned {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			if c.parts[tp] == nil {
				ps := &partState{tp: tp, next: -1, skip: done[tp], progress: time.Now(), committed: -1}
				if off, ok := committed[tp]; ok {
					ps.committed = off
				}
				c.parts[tp] = ps
			}
		}
	}
	c.rebuildOrderLocked()
	c.notifyLocked()
}

// fetchDone reads the group's committed offsets of the given partitions
// and the done offsets their commit metadata lists.
func (d *Driver) fetchDone(ctx context.Context, cl *kgo.Client, tps map[string][]int32) (map[topicPartition][]offsetRange, map[topicPartition]int64, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = d.cfg.GroupOptions.GroupID
	for topic, parts := range tps {
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = topic
		rt.Partitions = parts
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return nil, nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, nil, err
	}
	out := make(map[topicPartition][]offsetRange)
	committed := make(map[topicPartition]int64)
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if kerr.ErrorForCode(p.ErrorCode) != nil {
				continue
			}
			if p.Offset >= 0 {
				committed[topicPartition{t.Topic, p.Partition}] = p.Offset
			}
			if p.Metadata == nil {
				continue
			}
			if rs := decodeDone(*p.Metadata); rs != nil {
				out[topicPartition{t.Topic, p.Partition}] = rs
			}
		}
	}
	return out, committed, nil
}

// onRevoked stops handing out records of the revoked partitions, waits
// (up to revokeWait) until their handed-out deliveries are settled, then
// commits their done prefix and forgets them: their buffered records are
// dropped, and settlements of deliveries still out after the wait return
// consumer.ErrStaleDelivery (the new owner runs those jobs again). The
// group's rebalance waits for this, so a job that is running is never
// started by the partition's next owner while it still runs here.
func (d *Driver) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c := d.cons
	if err := d.drainRevoked(ctx, cl, revoked); err != nil {
		d.log.Warn("revoked partitions still have running jobs; their new owner runs them again", "err", err)
	}
	c.commitMu.Lock()
	defer c.commitMu.Unlock()
	points := d.dropPartitions(cl, revoked)
	if len(points) == 0 {
		return
	}
	if err := commit(ctx, cl, points); err != nil {
		d.log.Warn("commit on revoke failed; the new owner re-runs the uncommitted jobs", "err", err)
	}
}

// revokeWait is how long onRevoked waits for the running jobs of revoked
// partitions: group_options.revoke_timeout, but a second less than the
// group's rebalance timeout, past which the group would drop this member.
func (d *Driver) revokeWait(cl *kgo.Client) time.Duration {
	wait := d.cfg.GroupOptions.RevokeTimeout
	if rt, ok := cl.OptValue(kgo.RebalanceTimeout).(time.Duration); ok && rt > 2*time.Second && rt-time.Second < wait {
		wait = rt - time.Second
	}
	return wait
}

// drainRevoked marks the partitions of tps as revoking (Receive no longer
// hands out their records, nor does the dead-letter retrier start copies
// of them) and waits until none of their records is handed out and
// unsettled or has its dead-letter or retry copy in flight, revokeWait passed or
// ctx is done. While Close leaves the group it does not wait: Close
// already waited for every delivery.
func (d *Driver) drainRevoked(ctx context.Context, cl *kgo.Client, tps map[string][]int32) error {
	c := d.cons
	var parts []*partState
	c.mu.Lock()
	for topic, ps := range tps {
		for _, p := range ps {
			if st := c.parts[topicPartition{topic, p}]; st != nil {
				st.revoking = true
				parts = append(parts, st)
			}
		}
	}
	leaving := c.leaving
	c.mu.Unlock()
	if leaving || len(parts) == 0 {
		return nil
	}
	timer := time.NewTimer(d.revokeWait(cl))
	defer timer.Stop()
	for {
		c.mu.Lock()
		out := 0
		for _, ps := range parts {
			for _, e := range ps.entries {
				if e.state == stateOut || e.state == stateCopying || (e.state == stateDead && e.dead.inFlight) {
					out++
				}
			}
		}
		changed := c.changedLocked()
		c.mu.Unlock()
		if out == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			return fmt.Errorf("kafkajobs: %d jobs of revoked partitions unsettled after %s", out, d.revokeWait(cl))
		case <-ctx.Done():
			return fmt.Errorf("kafkajobs: %d jobs of revoked partitions unsettled: %w", out, ctx.Err())
		}
	}
}

// onLost forgets lost partitions without committing (the group no longer
// accepts our commits for them).
func (d *Driver) onLost(_ context.Context, cl *kgo.Client, lost map[string][]int32) {
	d.dropPartitions(cl, lost)
}

// dropPartitions marks the given partitions revoked, removes them and
// returns their uncommitted commit points.
func (d *Driver) dropPartitions(cl *kgo.Client, tps map[string][]int32) map[topicPartition]commitPoint {
	c := d.cons
	c.mu.Lock()
	defer c.mu.Unlock()
	points := make(map[topicPartition]commitPoint)
	var resume map[string][]int32
	for topic, parts := range tps {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			ps := c.parts[tp]
			if ps == nil {
				continue
			}
			ps.revoked = true
			delete(c.parts, tp)
			c.kickRoomLocked()
			if cp, ok := ps.commitPointLocked(); ok && ps.dirty {
				points[tp] = cp
			}
			if ps.paused {
				ps.paused = false
				c.npaused--
				if resume == nil {
					resume = make(map[string][]int32)
				}
				resume[topic] = append(resume[topic], p)
			}
		}
	}
	if resume != nil {
		cl.ResumeFetchPartitions(resume)
	}
	c.rebuildOrderLocked()
	c.notifyLocked()
	return points
}

func (c *consumerState) beginClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closing = true
	c.notifyLocked()
}

// waitIdle waits until no delivery is handed out and unsettled, or ctx is
// done.
func (c *consumerState) waitIdle(ctx context.Context) error {
	for {
		c.mu.Lock()
		active, changed := c.active, c.changedLocked()
		c.mu.Unlock()
		if active <= 0 {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%d deliveries still unsettled: %w", active, ctx.Err())
		}
	}
}

// beginLeave tells the rebalance callbacks that Close is leaving the
// group after waiting for every delivery.
func (c *consumerState) beginLeave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.leaving = true
}

func (c *consumerState) finishClose() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	c.notifyLocked()
}

func (c *consumerState) health() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return consumer.ErrClosed
	}
	return joinLine(c.fetchErr, c.commitErr)
}

func (c *consumerState) fillStat(st *consumer.Stat, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ready, delayed int64
	held := c.kgoBuf.heldCounts()
	for _, ps := range c.parts {
		// Past what was polled: the lag of the last fetch, or the
		// records kgo fetched since, when more (kgo fetches from next).
		lag := int64(held[ps.tp])
		delete(held, ps.tp)
		if ps.hasHWM && ps.next >= 0 && ps.hwm-ps.next > lag {
			lag = ps.hwm - ps.next
		}
		ready += lag
		for _, e := range ps.entries {
			if e.state != statePending {
				continue
			}
			if e.readyAt.After(now) {
				delayed++
			} else {
				ready++
			}
		}
	}
	for _, n := range held { // partitions nothing was polled from yet
		ready += int64(n)
	}
	st.Ready, st.Delayed, st.Active = ready, delayed, int64(c.active)
	st.Consuming = !c.closing && c.fetchErr == nil
	if err := joinLine(c.fetchErr, c.commitErr); err != nil {
		st.Error = err.Error()
	}
}
