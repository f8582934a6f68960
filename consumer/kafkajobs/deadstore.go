package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// Failed jobs on Kafka.
//
// The failed jobs of a pipeline are the records of its dead-letter topic
// that were neither retried nor removed. What was retried or removed is
// recorded in a consumer group of its own, DeadGroupPrefix + the topic,
// per partition: its committed offset is the first record still offered,
// and the commit's metadata lists the offsets after it that are gone
// ("12-15,19"). A record is recorded as gone only once its retry copy was
// acknowledged; when the commit fails (the broker went away), the driver
// remembers the offsets and writes them with the next commit, and does not
// offer them meanwhile. Commit metadata is bounded by the broker
// (offset.metadata.max.bytes, 4096 by default): an operation that would
// leave too many scattered offsets gone in one partition is refused
// (ErrDeadTooScattered); retrying or removing the older ones first, or
// all, keeps the list short.

// DeadGroupPrefix starts the name of the consumer group that records
// which records of a dead-letter topic were retried or removed.
const DeadGroupPrefix = "pipevisor-failed."

// maxDeadMetadata bounds the commit metadata written (see
// ErrDeadTooScattered).
const maxDeadMetadata = 4000

// ErrDeadTooScattered is returned by RetryDead and RemoveDead when the
// records gone past a partition's first one still offered no longer fit
// the commit metadata.
var ErrDeadTooScattered = errors.New("kafkajobs: too many failed jobs retried or removed out of order in one partition; retry or remove the older ones first")

// deadState is the driver's side of the dead-letter topic: operations
// take turns, and offsets gone but not committed yet are kept.
type deadState struct {
	mu      sync.Mutex
	pending map[int32]map[int64]bool // partition -> offsets gone, not committed
}

var _ consumer.DeadStore = (*Driver)(nil)

// deadPart is one partition of the dead-letter topic as an operation sees
// it.
type deadPart struct {
	partition  int32
	start, end int64          // log start offset, high watermark
	pos        int64          // first offset still offered
	gone       map[int64]bool // offsets >= pos retried or removed
	topicID    [16]byte       // newer OffsetCommit versions name topics by id
}

// heldRecord is one record still offered.
type heldRecord struct {
	rec  *kgo.Record
	dead consumer.DeadJob
}

func (d *Driver) deadGroup() string { return DeadGroupPrefix + d.deadLetter }

// loadDead reads the partitions, offsets and gone lists of the
// dead-letter topic. Caller holds d.dlq.mu.
func (d *Driver) loadDead(ctx context.Context) ([]*deadPart, error) {
	if d.deadLetter == "" {
		return nil, fmt.Errorf("kafkajobs: pipeline %q: %w", d.name, consumer.ErrNoDeadStore)
	}
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(d.deadLetter)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, d.client)
	if err != nil {
		return nil, fmt.Errorf("kafkajobs: metadata of dead_letter topic %q: %w", d.deadLetter, err)
	}
	var parts []*deadPart
	for _, t := range mresp.Topics {
		if t.Topic == nil || *t.Topic != d.deadLetter {
			continue
		}
		if errors.Is(kerr.ErrorForCode(t.ErrorCode), kerr.UnknownTopicOrPartition) {
			return nil, nil // nothing died yet
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return nil, fmt.Errorf("kafkajobs: metadata of dead_letter topic %q: %w", d.deadLetter, err)
		}
		for _, p := range t.Partitions {
			parts = append(parts, &deadPart{partition: p.Partition, topicID: t.TopicID, gone: map[int64]bool{}})
		}
	}
	slices.SortFunc(parts, func(a, b *deadPart) int { return int(a.partition - b.partition) })
	if len(parts) == 0 {
		return nil, nil
	}
	for _, ts := range []int64{-2, -1} { // earliest, latest
		req := kmsg.NewPtrListOffsetsRequest()
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = d.deadLetter
		for _, p := range parts {
			rp := kmsg.NewListOffsetsRequestTopicPartition()
			rp.Partition, rp.Timestamp, rp.CurrentLeaderEpoch = p.partition, ts, -1
			rt.Partitions = append(rt.Partitions, rp)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, d.client)
		if err != nil {
			return nil, fmt.Errorf("kafkajobs: offsets of dead_letter topic %q: %w", d.deadLetter, err)
		}
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
					return nil, fmt.Errorf("kafkajobs: offsets of %s[%d]: %w", d.deadLetter, rp.Partition, err)
				}
				for _, p := range parts {
					if p.partition == rp.Partition {
						if ts == -2 {
							p.start = rp.Offset
						} else {
							p.end = rp.Offset
						}
					}
				}
			}
		}
	}
	of := kmsg.NewPtrOffsetFetchRequest()
	of.Group = d.deadGroup()
	ot := kmsg.NewOffsetFetchRequestTopic()
	ot.Topic = d.deadLetter
	for _, p := range parts {
		ot.Partitions = append(ot.Partitions, p.partition)
	}
	of.Topics = append(of.Topics, ot)
	oresp, err := of.RequestWith(ctx, d.client)
	if err == nil {
		err = kerr.ErrorForCode(oresp.ErrorCode)
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		oresp, err = &kmsg.OffsetFetchResponse{}, nil // nothing recorded yet
	}
	if err != nil {
		return nil, fmt.Errorf("kafkajobs: offsets of group %q: %w", d.deadGroup(), err)
	}
	for _, t := range oresp.Topics {
		for _, rp := range t.Partitions {
			for _, p := range parts {
				if p.partition != rp.Partition || kerr.ErrorForCode(rp.ErrorCode) != nil {
					continue
				}
				p.pos = rp.Offset
				if rp.Metadata != nil {
					p.gone = parseGone(*rp.Metadata)
				}
			}
		}
	}
	for _, p := range parts {
		p.pos = max(p.pos, p.start)
		for off := range d.dlq.pending[p.partition] {
			p.gone[off] = true
		}
		p.compact()
	}
	return parts, nil
}

// compact moves pos past the gone offsets at its front and drops gone
// offsets before it.
func (p *deadPart) compact() {
	for p.gone[p.pos] {
		p.pos++
	}
	maps.DeleteFunc(p.gone, func(off int64, _ bool) bool { return off < p.pos })
}

// parseGone reads a gone list ("12-15,19").
func parseGone(s string) map[int64]bool {
	out := map[int64]bool{}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a || b-a > 1<<20 {
				continue
			}
		}
		for off := a; off <= b; off++ {
			out[off] = true
		}
	}
	return out
}

// formatGone writes a gone list, ranges merged.
func formatGone(gone map[int64]bool) string {
	offs := slices.Sorted(maps.Keys(gone))
	var b strings.Builder
	for i := 0; i < len(offs); {
		j := i
		for j+1 < len(offs) && offs[j+1] == offs[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(offs[i], 10))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(offs[j], 10))
		}
		i = j + 1
	}
	return b.String()
}

// readDead returns the records of parts still offered, oldest first (by
// record time), at most limit when limit > 0 (per partition read, then
// cut). It reads with a client of its own that belongs to no group.
func (d *Driver) readDead(ctx context.Context, parts []*deadPart, limit int) ([]heldRecord, error) {
	offsets := map[int32]kgo.Offset{}
	for _, p := range parts {
		if p.pos < p.end {
			offsets[p.partition] = kgo.NewOffset().At(p.pos)
		}
	}
	if len(offsets) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(append(slices.Clone(d.baseOpts),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{d.deadLetter: offsets}))...)
	if err != nil {
		return nil, fmt.Errorf("kafkajobs: dead_letter reader: %w", err)
	}
	defer cl.Close()
	byPart := map[int32]*deadPart{}
	left := 0
	for _, p := range parts {
		byPart[p.partition] = p
		if p.pos < p.end {
			left++
		}
	}
	next := map[int32]int64{}
	var out []heldRecord
	for left > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("kafkajobs: reading dead_letter topic %q: %w", d.deadLetter, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = errors.Join(ferr, err) })
		if ferr != nil && !errors.Is(ferr, context.Canceled) {
			return nil, fmt.Errorf("kafkajobs: reading dead_letter topic %q: %w", d.deadLetter, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			p := byPart[r.Partition]
			if p == nil || r.Offset >= p.end || r.Offset < next[r.Partition] {
				return
			}
			next[r.Partition] = r.Offset + 1
			if r.Offset+1 >= p.end {
				left--
			}
			if p.gone[r.Offset] {
				return
			}
			out = append(out, heldRecord{rec: r, dead: d.deadJob(r)})
		})
	}
	slices.SortStableFunc(out, func(a, b heldRecord) int { return a.rec.Timestamp.Compare(b.rec.Timestamp) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// deadJob reads a dead-letter record as a dead job.
func (d *Driver) deadJob(r *kgo.Record) consumer.DeadJob {
	m := readRecord(r, d.cfg.JobHeader, d.cfg.Priority)
	headers := maps.Clone(m.headers)
	reason := ""
	if v := headers[hdrDeadReason]; len(v) > 0 {
		reason = v[0]
	}
	maps.DeleteFunc(headers, func(k string, _ []string) bool {
		return k == hdrDeadReason || k == hdrSourceTopic || k == hdrSourcePartition || k == hdrSourceOffset
	})
	if len(headers) == 0 {
		headers = nil
	}
	key := string(r.Key)
	if key == m.id {
		key = "" // Publish keys a job without a key by its id
	}
	return consumer.DeadJob{
		Job: consumer.Job{
			ID: m.id, Name: m.job, Pipeline: d.name, Payload: r.Value,
			Headers: headers, Priority: m.priority, Key: key,
		},
		Reason:   reason,
		Attempts: m.attempt,
		At:       r.Timestamp,
	}
}

// commitDead records parts' positions and gone lists in the dead group.
// On failure the offsets of newly (partition -> offsets gone in this
// operation) stay pending in memory: not offered, and written with the
// next commit.
func (d *Driver) commitDead(ctx context.Context, parts []*deadPart, newly map[int32][]int64) error {
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Group = d.deadGroup()
	req.Generation = -1
	rt := kmsg.NewOffsetCommitRequestTopic()
	rt.Topic = d.deadLetter
	if len(parts) > 0 {
		rt.TopicID = parts[0].topicID
	}
	for _, p := range parts {
		p.compact()
		rp := kmsg.NewOffsetCommitRequestTopicPartition()
		rp.Partition, rp.Offset, rp.LeaderEpoch = p.partition, p.pos, -1
		rp.Metadata = kmsg.StringPtr(formatGone(p.gone))
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, d.client)
	if err == nil {
		for _, t := range resp.Topics {
			for _, rp := range t.Partitions {
				err = errors.Join(err, kerr.ErrorForCode(rp.ErrorCode))
			}
		}
	}
	if err != nil {
		if d.dlq.pending == nil {
			d.dlq.pending = map[int32]map[int64]bool{}
		}
		for part, offs := range newly {
			if d.dlq.pending[part] == nil {
				d.dlq.pending[part] = map[int64]bool{}
			}
			for _, off := range offs {
				d.dlq.pending[part][off] = true
			}
		}
		return fmt.Errorf("kafkajobs: record retried and removed failed jobs in group %q: %w", d.deadGroup(), err)
	}
	d.dlq.pending = nil // every pending offset was part of parts' gone lists
	return nil
}

// ListDead returns the records of the dead-letter topic not retried or
// removed, oldest first, at most limit when limit > 0. It commits
// nothing. Without a dead-letter topic it returns consumer.ErrNoDeadStore.
func (d *Driver) ListDead(ctx context.Context, limit int) ([]consumer.DeadJob, error) {
	d.dlq.mu.Lock()
	defer d.dlq.mu.Unlock()
	parts, err := d.loadDead(ctx)
	if err != nil {
		return nil, err
	}
	held, err := d.readDead(ctx, parts, limit)
	if err != nil {
		return nil, err
	}
	out := make([]consumer.DeadJob, len(held))
	for i := range held {
		out[i] = held[i].dead
	}
	return out, nil
}

// RetryDead produces the selected failed jobs to the pipeline's topic
// (the topic they died in when the pipeline consumes it, else the one
// Publish writes to) as new jobs, attempt 1, with their ids, keys,
// headers and priorities, and records each one whose produce was
// acknowledged as gone from the dead-letter topic.
func (d *Driver) RetryDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return d.doDead(ctx, sel, func(ctx context.Context, held []heldRecord) []error {
		recs := make([]*kgo.Record, len(held))
		consumed := d.consumedTopics()
		for i, h := range held {
			topic := d.publishTopic()
			if src, ok := recordHeader(h.rec, hdrSourceTopic); ok && slices.Contains(consumed, src) {
				topic = src
			}
			j := h.dead.Job
			if j.Key == "" {
				j.Key = string(h.rec.Key)
			}
			recs[i] = d.jobRecord(topic, j)
		}
		pctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ProducerOptions.DeliveryTimeout, ErrDeliveryTimeout)
		defer cancel()
		errs := d.prod.produce(pctx, recs)
		for i, err := range errs {
			if err != nil {
				errs[i] = fmt.Errorf("kafkajobs: retry job %q: %w", held[i].dead.Job.ID, inFlightErr(err))
			}
		}
		return errs
	})
}

// recordHeader returns the first value of header key of r.
func recordHeader(r *kgo.Record, key string) (string, bool) {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// RemoveDead records the selected failed jobs as gone.
func (d *Driver) RemoveDead(ctx context.Context, sel consumer.DeadSelection) ([]string, error) {
	return d.doDead(ctx, sel, nil)
}

// doDead runs first (nil: nothing) on the selected records and records
// the ones it succeeded for as gone.
func (d *Driver) doDead(ctx context.Context, sel consumer.DeadSelection, first func(context.Context, []heldRecord) []error) ([]string, error) {
	d.dlq.mu.Lock()
	defer d.dlq.mu.Unlock()
	parts, err := d.loadDead(ctx)
	if err != nil {
		return nil, err
	}
	held, err := d.readDead(ctx, parts, 0)
	if err != nil {
		return nil, err
	}
	var picked []heldRecord
	for _, h := range held {
		if sel.Has(h.dead.Job.ID) {
			picked = append(picked, h)
		}
	}
	if len(picked) == 0 {
		return nil, nil
	}
	// Refuse before acting when the gone lists would not fit.
	trial := map[int32]*deadPart{}
	for _, p := range parts {
		c := *p
		c.gone = maps.Clone(p.gone)
		trial[p.partition] = &c
	}
	for _, h := range picked {
		trial[h.rec.Partition].gone[h.rec.Offset] = true
	}
	for _, p := range trial {
		p.compact()
		if len(formatGone(p.gone)) > maxDeadMetadata {
			return nil, ErrDeadTooScattered
		}
	}
	errs := make([]error, len(picked))
	if first != nil {
		errs = first(ctx, picked)
	}
	byPart := map[int32]*deadPart{}
	for _, p := range parts {
		byPart[p.partition] = p
	}
	var ids []string
	newly := map[int32][]int64{}
	for i, h := range picked {
		if errs[i] == nil {
			byPart[h.rec.Partition].gone[h.rec.Offset] = true
			newly[h.rec.Partition] = append(newly[h.rec.Partition], h.rec.Offset)
			ids = append(ids, h.dead.Job.ID)
		}
	}
	if len(ids) > 0 {
		if err := d.commitDead(ctx, parts, newly); err != nil {
			// The jobs were acted on: the driver keeps them gone and
			// commits them with its next operation.
			d.log.Warn("failed jobs retried or removed, but recording it failed; recorded with the next operation", "err", err)
		}
	}
	return ids, errors.Join(errs...)
}
