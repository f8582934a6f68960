package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
	"github.com/pipevisor/pipevisor/frame"
)

// The plain consumer is what a user would write instead of the
// supervisor's kafka driver, doing the same work per record: a franz-go
// group consumer configured as the driver's (auto-commit off, rebalances
// blocked while polling, fetch max wait 500ms) hands each record to one
// of the same PHP echo workers over the same goridge pipe protocol (job
// context JSON with id, job, headers, attempt, topic, partition, offset;
// the record value as body), with the same number of workers and the
// same pipelining (up to depth jobs written to a worker ahead of its
// replies), keeps the same order (at most one record of a partition, or
// of a key, running at a time), and commits like the driver: each
// partition's contiguous done prefix, synchronously, at once after a
// quiet spell and at most every commitGap while acks follow one another.
const (
	// plainPollMax is the most records one poll takes.
	plainPollMax = 256
	// plainBacklog is the backlog (records held locally and not yet
	// handed to a worker) below which the poller polls. Above it, it
	// polls only while a worker waits and no lane has a record (a poll
	// may bring the records of one partition only), up to maxBacklog.
	plainBacklog = 512
	maxBacklog   = 16 * plainBacklog
	// commitGap is the driver's least time between two commits.
	commitGap = 5 * time.Millisecond
	// fetchMaxWait is the driver's fetch max wait.
	fetchMaxWait = 500 * time.Millisecond
)

// plainConfig configures a plain consumer.
type plainConfig struct {
	brokers       []string
	topic, group  string
	workers       int
	depth         int    // jobs written to a worker ahead of its replies
	ordering      string // "partition" or "key"
	command       []string
	pipeline, drv string // job context "pipeline" and "driver"
}

// plainRec is one polled record and its job.
type plainRec struct {
	r    *kgo.Record
	part *plainPart
	lane *plainLane
	done bool
	id   string
	job  string
	hdrs map[string][]string
}

// plainPart tracks a partition's records in offset order for commits.
type plainPart struct {
	topic     string
	partition int32
	recs      []*plainRec // not yet committed, from the oldest
	next      kgo.EpochOffset
	dirty     bool // next moved since the last commit
}

// plainLane is an ordering lane (a partition or a key): its records run
// one at a time, in order.
type plainLane struct {
	queue   []*plainRec
	busy    bool
	inReady bool
}

// plainConsumer is a running plain consumer.
type plainConsumer struct {
	cfg     plainConfig
	cl      *kgo.Client
	workers []*benchkit.PHPWorker

	mu      sync.Mutex
	cond    *sync.Cond // a lane became ready, or closing
	ready   []*plainLane
	lanes   map[string]*plainLane
	parts   map[string]map[int32]*plainPart
	backlog int
	closing bool

	waiters int           // workers waiting in take
	room    chan struct{} // the poller may want to poll (cap 1)
	commit  chan struct{} // a done prefix moved (cap 1)
}

// newPlainConsumer starts the workers and the franz-go client (which joins
// the group and starts fetching). The caller must call close.
func newPlainConsumer(ctx context.Context, cfg plainConfig) (*plainConsumer, error) {
	p := &plainConsumer{
		cfg:    cfg,
		lanes:  make(map[string]*plainLane),
		parts:  make(map[string]map[int32]*plainPart),
		room:   make(chan struct{}, 1),
		commit: make(chan struct{}, 1),
	}
	p.cond = sync.NewCond(&p.mu)
	for range cfg.workers {
		w, err := benchkit.StartPHPWorker(ctx, cfg.command)
		if err != nil {
			p.stopWorkers()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(cfg.brokers...),
		kgo.ConsumerGroup(cfg.group),
		kgo.ConsumeTopics(cfg.topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxWait(fetchMaxWait),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		p.stopWorkers()
		return nil, err
	}
	p.cl = cl
	return p, nil
}

func (p *plainConsumer) stopWorkers() {
	for _, w := range p.workers {
		w.Stop()
	}
}

// run consumes until ctx ends or a worker fails: it polls while the
// number of records polled so far is below *target (read under p.mu; see
// setTarget), and its workers and committer process what it polled.
// targetSet is signalled when the target rises.
func (p *plainConsumer) run(ctx context.Context, target func() int64, targetSet <-chan struct{}) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(p.workers)+2)
	var wg sync.WaitGroup
	stopOnErr := func(i int, f func() error) {
		if errs[i] = f(); errs[i] != nil {
			cancel()
		}
	}
	for i, w := range p.workers {
		wg.Go(func() { stopOnErr(i, func() error { return p.work(ctx, w) }) })
	}
	wg.Go(func() { stopOnErr(len(p.workers), func() error { return p.commitLoop(ctx) }) })
	wg.Go(func() { stopOnErr(len(p.workers)+1, func() error { return p.pollLoop(ctx, target, targetSet) }) })
	wg.Go(func() { // wakes the workers at the end
		<-ctx.Done()
		p.mu.Lock()
		p.closing = true
		p.cond.Broadcast()
		p.mu.Unlock()
	})
	wg.Wait()
	err := errors.Join(errs...)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		err = nil
	}
	return err
}

// close leaves the group and stops the workers.
func (p *plainConsumer) close() {
	p.cl.Close()
	p.stopWorkers()
}

// pollLoop polls up to the target, keeping the backlog bounded.
func (p *plainConsumer) pollLoop(ctx context.Context, target func() int64, targetSet <-chan struct{}) error {
	var polled int64
	for {
		want := target() - polled
		if want <= 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-targetSet:
			}
			continue
		}
		p.mu.Lock()
		room := maxBacklog - p.backlog
		if p.backlog >= plainBacklog && (p.waiters == 0 || len(p.ready) > 0) {
			room = 0
		}
		p.mu.Unlock()
		if room <= 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-p.room:
			}
			continue
		}
		fs := p.cl.PollRecords(ctx, int(min(want, int64(min(room, plainPollMax)))))
		if fs.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		var err error
		fs.EachError(func(t string, part int32, ferr error) {
			err = errors.Join(err, fmt.Errorf("fetch %s[%d]: %w", t, part, ferr))
		})
		if err != nil {
			return err
		}
		polled += int64(p.ingest(fs))
		p.cl.AllowRebalance()
	}
}

// ingest files polled records into their partitions and lanes and returns
// how many there were.
func (p *plainConsumer) ingest(fs kgo.Fetches) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	fs.EachRecord(func(r *kgo.Record) {
		n++
		pt := p.parts[r.Topic][r.Partition]
		if pt == nil {
			if p.parts[r.Topic] == nil {
				p.parts[r.Topic] = make(map[int32]*plainPart)
			}
			pt = &plainPart{topic: r.Topic, partition: r.Partition}
			p.parts[r.Topic][r.Partition] = pt
		}
		laneKey := r.Topic + "/" + strconv.Itoa(int(r.Partition))
		if p.cfg.ordering == "key" {
			laneKey += "/" + string(r.Key)
		}
		ln := p.lanes[laneKey]
		if ln == nil {
			ln = &plainLane{}
			p.lanes[laneKey] = ln
		}
		rec := &plainRec{r: r, part: pt, lane: ln}
		readHeaders(rec)
		pt.recs = append(pt.recs, rec)
		ln.queue = append(ln.queue, rec)
		p.backlog++
		if !ln.busy && !ln.inReady {
			ln.inReady = true
			p.ready = append(p.ready, ln)
			p.cond.Signal()
		}
	})
	return n
}

// readHeaders reads the job id, name and user headers of rec's record as
// the supervisor wrote them (rr_* headers), with the driver's fallbacks.
func readHeaders(rec *plainRec) {
	for _, h := range rec.r.Headers {
		switch h.Key {
		case "rr_id":
			rec.id = string(h.Value)
		case "rr_job":
			rec.job = string(h.Value)
		case "rr_pipeline", "rr_priority", "rr_attempt", "x-attempt", "rr_delay_until", "rr_auto_ack":
		default:
			if rec.hdrs == nil {
				rec.hdrs = make(map[string][]string)
			}
			rec.hdrs[h.Key] = append(rec.hdrs[h.Key], string(h.Value))
		}
	}
	if rec.id == "" {
		rec.id = fmt.Sprintf("%s/%d/%d", rec.r.Topic, rec.r.Partition, rec.r.Offset)
	}
	if rec.job == "" {
		rec.job = rec.r.Topic
	}
}

// take waits for ready lanes and hands out the next record of up to max
// of them, marking their lanes busy; nil once closing.
func (p *plainConsumer) take(dst []*plainRec, max int) []*plainRec {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) == 0 && !p.closing {
		p.waiters++
		p.kickPollerLocked()
		p.cond.Wait()
		p.waiters--
	}
	if p.closing {
		return dst
	}
	for len(dst) < max && len(p.ready) > 0 {
		ln := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		ln.inReady, ln.busy = false, true
		dst = append(dst, ln.queue[0])
		ln.queue[0] = nil
		ln.queue = ln.queue[1:]
	}
	wasAbove := p.backlog >= plainBacklog
	p.backlog -= len(dst)
	if wasAbove && p.backlog < plainBacklog {
		p.kickPollerLocked()
	}
	return dst
}

// kickPollerLocked wakes the poller if it waits for room.
func (p *plainConsumer) kickPollerLocked() {
	select {
	case p.room <- struct{}{}:
	default:
	}
}

// finish marks rec done: its lane may run the next record, and its
// partition's done prefix moves.
func (p *plainConsumer) finish(rec *plainRec) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rec.done = true
	ln := rec.lane
	ln.busy = false
	if len(ln.queue) > 0 && !ln.inReady {
		ln.inReady = true
		p.ready = append(p.ready, ln)
		p.cond.Signal()
	}
	pt := rec.part
	i := 0
	for i < len(pt.recs) && pt.recs[i].done {
		i++
	}
	if i == 0 {
		return
	}
	last := pt.recs[i-1].r
	pt.next = kgo.EpochOffset{Epoch: last.LeaderEpoch, Offset: last.Offset + 1}
	clear(pt.recs[:i])
	pt.recs = pt.recs[i:]
	pt.dirty = true
	select {
	case p.commit <- struct{}{}:
	default:
	}
}

// work runs records on w: up to depth of them written at once, then each
// reply read and its record finished.
func (p *plainConsumer) work(ctx context.Context, w *benchkit.PHPWorker) error {
	var (
		batch []*plainRec
		buf   []byte
		jctx  []byte
		opt   [1]uint32
	)
	for ctx.Err() == nil {
		batch = p.take(batch[:0], p.cfg.depth)
		if len(batch) == 0 {
			return nil
		}
		buf = buf[:0]
		for _, rec := range batch {
			jctx = frame.AppendJobContext(jctx, &frame.JobMeta{
				ID: rec.id, Job: rec.job, Driver: p.cfg.drv, Queue: rec.r.Topic,
				Pipeline: p.cfg.pipeline, Headers: rec.hdrs, Attempt: 1,
				Extra: position{rec.r},
			})
			opt[0] = uint32(len(jctx))
			buf = frame.AppendFrame(buf, frame.FlagCodecRaw, opt[:], jctx, rec.r.Value)
		}
		if err := w.Write(buf); err != nil {
			return err
		}
		for _, rec := range batch {
			if err := w.ReadAck(); err != nil {
				return err
			}
			p.finish(rec)
		}
	}
	return nil
}

// position adds a record's topic, partition and offset to its job
// context.
type position struct{ r *kgo.Record }

func (x position) AppendContext(b []byte) []byte {
	b = append(b, `,"topic":`...)
	b = frame.AppendJSONString(b, x.r.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(x.r.Partition), 10)
	b = append(b, `,"offset":`...)
	return strconv.AppendInt(b, x.r.Offset, 10)
}

// commitLoop commits the moved done prefixes after each kick, at most
// every commitGap, as the driver's committer does.
func (p *plainConsumer) commitLoop(ctx context.Context) error {
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.commit:
		}
		if wait := commitGap - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		last = time.Now()
		if err := p.commitNow(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// commitNow commits every partition whose done prefix moved.
func (p *plainConsumer) commitNow(ctx context.Context) error {
	offsets := make(map[string]map[int32]kgo.EpochOffset)
	p.mu.Lock()
	for topic, parts := range p.parts {
		for part, pt := range parts {
			if !pt.dirty {
				continue
			}
			pt.dirty = false
			if offsets[topic] == nil {
				offsets[topic] = make(map[int32]kgo.EpochOffset)
			}
			offsets[topic][part] = pt.next
		}
	}
	p.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var err error
	p.cl.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, cerr error) {
		if cerr != nil {
			err = cerr
			return
		}
		for _, t := range resp.Topics {
			for _, pr := range t.Partitions {
				if e := kerr.ErrorForCode(pr.ErrorCode); e != nil {
					err = errors.Join(err, fmt.Errorf("commit %s[%d]: %w", t.Topic, pr.Partition, e))
				}
			}
		}
	})
	return err
}
