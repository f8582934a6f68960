package kafkajobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// partitionCountTTL is how long a topic's partition count is trusted
// before it is asked again.
const partitionCountTTL = time.Minute

// onWireGrace is how long Publish keeps waiting, after its ctx ended, for
// the broker's answer to records already sent.
const onWireGrace = 2 * time.Second

// topicPartition names one partition.
type topicPartition struct {
	topic     string
	partition int32
}

// partitionHealth is the produce state of one partition: records handed
// to kgo whose promise has not run yet, and the first failure seen among
// them. While failed is set, new records for the partition are refused.
type partitionHealth struct {
	inflight int
	failed   error
}

type topicMeta struct {
	partitions int
	fetched    time.Time
	roundRobin int
	hasher     kgo.TopicPartitioner
}

// producer sends records with driver-chosen partitions and keeps the
// per-partition failure state of the franz-go #852 protection.
type producer struct {
	client     *kgo.Client
	strategy   string
	autoCreate bool

	mu     sync.Mutex
	closed bool
	topics map[string]*topicMeta
	health map[topicPartition]*partitionHealth
	// promises counts the records handed to kgo whose promise has not
	// returned yet; drained, when set, is closed once it drops to zero
	// (see waitPromises).
	promises int
	drained  chan struct{}
}

// errUnanswered marks a record whose produce wait ended before kgo
// reported its outcome: the broker may still take it.
var errUnanswered = errors.New("kafkajobs: waiting for the broker")

func newProducer(client *kgo.Client, cfg Config) *producer {
	return &producer{
		client:     client,
		strategy:   cfg.ProducerOptions.PartitioningStrategy,
		autoCreate: cfg.AutoCreateTopicsEnable,
		topics:     make(map[string]*topicMeta),
		health:     make(map[topicPartition]*partitionHealth),
	}
}

func (p *producer) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// waitPromises waits until every promise of a record handed to kgo has
// returned, or ctx is done. Close calls it after closing the client,
// which fails every record it still holds.
func (p *producer) waitPromises(ctx context.Context) error {
	p.mu.Lock()
	if p.promises == 0 {
		p.mu.Unlock()
		return nil
	}
	if p.drained == nil {
		p.drained = make(chan struct{})
	}
	drained, n := p.drained, p.promises
	p.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d produce promises outstanding: %w", n, ctx.Err())
	}
}

// promiseReturned counts one promise as returned (see waitPromises).
func (p *producer) promiseReturned() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.promises--
	if p.promises == 0 && p.drained != nil {
		close(p.drained)
		p.drained = nil
	}
}

func (p *producer) isClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.closed
}

// Publish produces one record per job to the pipeline's topic (see
// publishTopic) and returns once the broker acknowledged every record, or
// ctx is done, or producer_options.delivery_timeout passed (a record
// already on the wire gets up to onWireGrace more for its answer). On
// failure it returns a *consumer.BatchError naming every job that was not
// acknowledged, each classified by inFlightErr: a job never handed to the
// broker (ErrNoTopic, ErrPartitionFailed: its partition has a failed
// produce in flight, no partition count) or one the broker refused with a
// non-retriable error is certainly not in the topic; a job without an
// answer (delivery timeout, ctx, retries exhausted, the client closed) or
// with a retriable error wraps consumer.ErrInDoubt (and ErrDeliveryTimeout
// when the delivery timeout ended it). Jobs the broker acknowledged are
// not in the error, whatever happened to the others. After Close it
// returns consumer.ErrClosed.
func (d *Driver) Publish(ctx context.Context, jobs []consumer.Job) error {
	if d.prod.isClosed() {
		return consumer.ErrClosed
	}
	if len(jobs) == 0 {
		return nil
	}
	// The delivery timeout bounds the whole call, partition lookup
	// included: with the brokers down nothing else would end it.
	ctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ProducerOptions.DeliveryTimeout, ErrDeliveryTimeout)
	defer cancel()
	topic := d.publishTopic()
	recs := make([]*kgo.Record, len(jobs))
	for i, j := range jobs {
		recs[i] = d.jobRecord(topic, j)
	}
	var errs []error
	if topic == "" {
		errs = make([]error, len(jobs))
		for i := range errs {
			errs[i] = notSentError{ErrNoTopic}
		}
	} else {
		errs = d.prod.produce(ctx, recs)
	}
	be := &consumer.BatchError{Failed: make(map[int]error)}
	for i, err := range errs {
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrDeliveryTimeout) && (errors.Is(err, kgo.ErrRecordTimeout) || context.Cause(ctx) == ErrDeliveryTimeout) {
			err = fmt.Errorf("%w: %w", ErrDeliveryTimeout, err)
		}
		be.Failed[i] = fmt.Errorf("kafkajobs: publish job %q: %w", jobs[i].ID, inFlightErr(err))
	}
	if len(be.Failed) == 0 {
		return nil
	}
	return be
}

// notSentError is the error of a record that was never handed to the
// client (no topic, no partition, its partition failed): it reads as its
// cause.
type notSentError struct{ err error }

func (e notSentError) Error() string { return e.err.Error() }
func (e notSentError) Unwrap() error { return e.err }

// inFlightErr returns err, wrapping consumer.ErrInDoubt when the record
// may be in the topic: it was handed to the client and got no answer, or
// a retriable one. A record never handed over (notSentError) or refused
// by the broker with a non-retriable error is not in doubt.
func inFlightErr(err error) error {
	var ns notSentError
	var ke *kerr.Error
	switch {
	case errors.As(err, &ns):
		return err
	case errors.As(err, &ke) && !ke.Retriable:
		return err
	}
	return fmt.Errorf("%w (%w)", err, consumer.ErrInDoubt)
}

// publishTopic is where Publish writes: the first consumed topic (of
// consumer_options.topics, or the legacy topic, or the first of
// consume_partitions by name); none for a regexp consumer or a pipeline
// without topics.
func (d *Driver) publishTopic() string {
	if d.cfg.ConsumerOptions.ConsumeRegexp {
		return ""
	}
	if t := d.consumedTopics(); len(t) > 0 {
		return t[0]
	}
	return ""
}

// jobRecord builds the record for a published job (see the package doc
// for the layout).
func (d *Driver) jobRecord(topic string, j consumer.Job) *kgo.Record {
	id := j.ID
	if id == "" {
		id = uuid.NewString()
	}
	key := j.Key
	if key == "" {
		key = id
	}
	pipeline := j.Pipeline
	if pipeline == "" {
		pipeline = d.name
	}
	prio := j.Priority
	if prio == 0 {
		prio = d.cfg.Priority
	}
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: j.Payload}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: hdrID, Value: []byte(id)},
		kgo.RecordHeader{Key: hdrJob, Value: []byte(j.Name)},
		kgo.RecordHeader{Key: hdrPipeline, Value: []byte(pipeline)},
		kgo.RecordHeader{Key: hdrPriority, Value: []byte(strconv.FormatInt(prio, 10))},
	)
	if j.Delay > 0 {
		r.Headers = append(r.Headers, delayHeader(time.Now().Add(j.Delay)))
	}
	if j.AutoAck {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: hdrAutoAck, Value: []byte("true")})
	}
	r.Headers = appendUserHeaders(r.Headers, j.Headers)
	return r
}

// produce sends recs (each with Topic and Key set; the partition is chosen
// here) and waits for every promise or ctx. The i-th error belongs to
// recs[i]. When ctx ends first, produce waits up to onWireGrace more for
// the answers of records already sent; every record still unresolved is
// then reported as failed with an error wrapping errUnanswered (its
// promise still runs later and updates the partition health).
func (p *producer) produce(ctx context.Context, recs []*kgo.Record) []error {
	return p.produceThen(ctx, recs, nil)
}

// produceThen is produce; in addition, for each record reported with
// errUnanswered, late (when not nil) is called once with its index and
// the outcome kgo reports later, from the record's promise: it must be
// quick and must not call into the producer. kgo ends every record (its
// record delivery timeout, producer_options.delivery_timeout, once it may
// fail it safely; an answer from the broker; or the client's Close), so
// late runs eventually.
func (p *producer) produceThen(ctx context.Context, recs []*kgo.Record, late func(i int, err error)) []error {
	var (
		mu       sync.Mutex // guards errs, settled, pending and returned against the promises
		errs     = make([]error, len(recs))
		settled  = make([]bool, len(recs))
		pending  = 1 // released by the loop below once every record is handed over
		done     = make(chan struct{})
		returned bool // the results were taken: later outcomes go to late
	)
	finish := func() { // with mu held
		pending--
		if pending == 0 {
			close(done)
		}
	}
	for i, r := range recs {
		part, err := p.partition(ctx, r)
		if err == nil {
			r.Partition = part
			err = p.acquire(topicPartition{r.Topic, part})
		}
		if err != nil {
			mu.Lock()
			errs[i], settled[i] = notSentError{err}, true
			mu.Unlock()
			continue
		}
		tp := topicPartition{r.Topic, part}
		mu.Lock()
		pending++
		mu.Unlock()
		p.mu.Lock()
		p.promises++
		p.mu.Unlock()
		p.client.Produce(ctx, r, func(_ *kgo.Record, err error) {
			defer p.promiseReturned()
			p.release(tp, err)
			mu.Lock()
			errs[i], settled[i] = err, true
			finish()
			after := returned
			mu.Unlock()
			if after && late != nil {
				late(i, err)
			}
		})
	}
	mu.Lock()
	finish()
	mu.Unlock()
	select {
	case <-done:
	case <-ctx.Done():
		// kgo fails the records it has not sent yet at once; records on
		// the wire get their answer shortly. Waiting for it keeps a job
		// the broker took from being reported as failed.
		t := time.NewTimer(onWireGrace)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	returned = true
	out := make([]error, len(errs))
	for i, err := range errs {
		out[i] = err
		if !settled[i] {
			out[i] = fmt.Errorf("%w: %w", errUnanswered, context.Cause(ctx))
		}
	}
	return out
}

// acquire registers one record in flight to tp, or refuses it while tp has
// an unsettled failure.
func (p *producer) acquire(tp topicPartition) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[tp]
	if h == nil {
		h = &partitionHealth{}
		p.health[tp] = h
	}
	if h.failed != nil {
		return fmt.Errorf("%w: %s[%d]: %w", ErrPartitionFailed, tp.topic, tp.partition, h.failed)
	}
	h.inflight++
	return nil
}

// release runs in a record's promise. A failure marks tp failed; the mark
// is cleared once every record that was in flight to tp has its result.
func (p *producer) release(tp topicPartition, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[tp]
	h.inflight--
	if err != nil && h.failed == nil {
		h.failed = err
	}
	if h.inflight == 0 {
		h.failed = nil
	}
	if err != nil && errors.Is(err, kerr.UnknownTopicOrPartition) {
		delete(p.topics, tp.topic)
	}
}

// partition chooses r's partition with the configured strategy.
func (p *producer) partition(ctx context.Context, r *kgo.Record) (int32, error) {
	n, err := p.partitionCount(ctx, r.Topic)
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	m := p.topics[r.Topic]
	if m == nil { // dropped by a concurrent release; the count is still valid
		m = &topicMeta{partitions: n, fetched: time.Now()}
		p.topics[r.Topic] = m
	}
	if p.strategy == PartitionRoundRobin {
		part := m.roundRobin % n
		m.roundRobin++
		return int32(part), nil
	}
	if m.hasher == nil {
		m.hasher = kgo.StickyKeyPartitioner(nil).ForTopic(r.Topic)
	}
	return int32(m.hasher.Partition(r, n)), nil
}

// partitionCount returns the number of partitions of topic, asking the
// brokers when the cached count is missing or old.
func (p *producer) partitionCount(ctx context.Context, topic string) (int, error) {
	p.mu.Lock()
	m := p.topics[topic]
	if m != nil && time.Since(m.fetched) < partitionCountTTL {
		n := m.partitions
		p.mu.Unlock()
		return n, nil
	}
	p.mu.Unlock()

	backoff := 50 * time.Millisecond
	for {
		n, err := p.fetchPartitionCount(ctx, topic)
		if err == nil {
			p.mu.Lock()
			if m := p.topics[topic]; m != nil {
				m.partitions, m.fetched = n, time.Now()
			} else {
				p.topics[topic] = &topicMeta{partitions: n, fetched: time.Now()}
			}
			p.mu.Unlock()
			return n, nil
		}
		if !kerr.IsRetriable(err) || (errors.Is(err, kerr.UnknownTopicOrPartition) && !p.autoCreate) {
			return 0, err
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, fmt.Errorf("kafkajobs: partitions of %q: %w (last error: %w)", topic, context.Cause(ctx), err)
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (p *producer) fetchPartitionCount(ctx context.Context, topic string) (int, error) {
	req := kmsg.NewPtrMetadataRequest()
	rt := kmsg.NewMetadataRequestTopic()
	rt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, rt)
	req.AllowAutoTopicCreation = p.autoCreate
	resp, err := req.RequestWith(ctx, p.client)
	if err != nil {
		return 0, fmt.Errorf("kafkajobs: metadata for %q: %w", topic, err)
	}
	for _, t := range resp.Topics {
		if t.Topic == nil || *t.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(t.ErrorCode); err != nil {
			return 0, fmt.Errorf("kafkajobs: topic %q: %w", topic, err)
		}
		if len(t.Partitions) == 0 {
			return 0, fmt.Errorf("kafkajobs: topic %q: %w", topic, kerr.LeaderNotAvailable)
		}
		return len(t.Partitions), nil
	}
	return 0, fmt.Errorf("kafkajobs: topic %q: %w", topic, kerr.UnknownTopicOrPartition)
}
