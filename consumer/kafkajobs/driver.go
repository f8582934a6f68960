// Package kafkajobs is the kafka driver: it publishes jobs as Kafka records
// and consumes them through franz-go (kgo), in a consumer group when
// group_options.group_id is set, else by reading the partitions directly
// as RoadRunner does (see "Without a consumer group" below).
//
// What it promises, beyond RoadRunner's kafka driver:
//
//   - Commits never skip a job. Only the contiguous prefix of settled
//     records of each partition is committed; a record that is running,
//     waiting for an in-place retry or failed holds the commit back. The
//     commit metadata lists the settled offsets past that point, so the
//     next owner of the partition re-runs only the jobs never settled
//     (see commitpoint.go).
//   - Rebalances stop revoked partitions cleanly: nothing more of them is
//     handed out, the rebalance waits (group_options.revoke_timeout, and
//     less than the group's rebalance timeout) until their running jobs
//     are settled, commits the done prefix, then gives them up. A job is
//     thus never started by the next owner while it still runs here;
//     only a job still running when the wait ends runs again there (its
//     late settlement returns consumer.ErrStaleDelivery).
//   - Order. A partition's records are handed out one at a time (ordering:
//     partition, the default); with ordering: key, records with different
//     keys run in parallel and records with one key stay in offset order.
//     In-place retries keep that order: the partition (or key) waits.
//   - A dead job is not handed out again. When its dead-letter copy cannot
//     be produced, the same copy is produced again (after copyRetryDelay,
//     doubling up to maxCopyRetryDelay) until it lands; a copy the broker
//     has not answered yet is not produced again before kgo reports its
//     outcome. Meanwhile the partition (or key) waits as for an in-place
//     retry, and the commit point stays before the record (see
//     deadletter.go).
//   - A Retry or Requeue settled through retry_topic runs once more,
//     either from the retry topic or, when its copy fails, in place. A
//     copy still unanswered when Settle's wait ends is awaited: the
//     record is retried in place only once kgo reports the copy failed,
//     and is done once it landed; meanwhile the partition (or key) and
//     the commit point wait for it (see retrycopy.go).
//   - Flow control. Records are fetched only when Receive is waiting and
//     nothing local can be handed out, a poll at a time (pollBatch), and
//     not while a partition's local buffer is full; a full partition is
//     paused at the broker only when it would hold other partitions back
//     (see flow.go).
//   - Produce ordering (franz-go #852): when a produce to a partition fails,
//     later publishes to that partition fail fast with ErrPartitionFailed
//     until every record that was in flight to it has its result.
//
// Without a consumer group (no group_options.group_id) the driver reads
// every partition of consumer_options.topics, or the partitions listed in
// consumer_options.consume_partitions, from their start offsets
// (consumer_offset, or each partition's own). The outcome table holds as
// above within the running process: a partition's (or key's) records run
// in offset order, in-place retries keep that order, dead jobs are
// produced to the dead-letter topic and not handed out again, retry_topic
// copies run once more. Nothing is committed, so there are no revocations
// and no commit point: a restart (or a second supervisor reading the same
// partitions) reads again from the start offsets, and every job past them
// runs again, settled or not (RoadRunner's behaviour without a group).
//
// Limits: the attempt count of an in-place retry lives in this process
// (a restart or rebalance hands the record out again as attempt 1 and
// its retry delay is lost; with retry_topic the copy carries rr_attempt);
// a dead record whose dead-letter copy is still pending when the driver
// closes or the partition is revoked or lost is left uncommitted, so the
// partition's next owner runs the job again (and a copy whose answer was
// lost may land twice; while the partition stays here, a copy still
// unanswered after the settle context or the producer's delivery timeout
// is not produced again before kgo reports its outcome); likewise a
// record whose retry copy is still unanswered when the driver closes or
// the partition is revoked (past the revocation wait) or lost is left
// uncommitted: the next owner runs the job again, and the copy may land
// as well; while the dead-letter topic stays unavailable or unanswered,
// or the retry topic unanswered, its partition (or key) makes no
// progress; Stat's Ready is taken from the last fetch's high watermark.
//
// Record layout written by Publish: key = job key, or the job id when the
// job has none; headers rr_id, rr_job, rr_pipeline, rr_priority, plus one
// record header per value of each user header (a header with two values is
// two record headers with the same name). Delayed jobs carry
// rr_delay_until (Unix milliseconds); the consumer holds such a record
// aside until then: later records (of the partition, or of the key) may
// pass it, and once due it waits until those that passed it are settled
// (never two records of a partition, or of a key, run at once); the
// commit point waits for it, so a long delay holds back the partition's
// commits and, past partitionBuffer local records, its fetching. Jobs published with AutoAck carry rr_auto_ack: true and are
// marked done when handed out. Retried copies carry rr_attempt; on
// receipt, x-attempt is read as well. Records written by RoadRunner's kafka driver (rr_job,
// no rr_id) get the record key as id; records without rr_* headers
// (third-party producers) get the id "topic/partition/offset" and the job
// name from the configured job_header, else the topic.
package kafkajobs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// DriverName is the value of consumer.Delivery.Driver and Stat.Driver.
const DriverName = "kafka"

// finalCommitGrace bounds the last commit of Close when Close's own ctx
// ended while it waited for unsettled deliveries.
const finalCommitGrace = 5 * time.Second

// Sentinel errors of the kafka driver.
var (
	// ErrPartitionFailed is returned by Publish for a job whose partition
	// had a failed produce whose sibling records are not all settled yet.
	ErrPartitionFailed = errors.New("kafkajobs: partition has a failed produce in flight")
	// ErrNoTopic is returned by Publish when the pipeline has no topic to
	// publish to (no consumer_options.topics, or consume_regexp).
	ErrNoTopic = errors.New("kafkajobs: no topic to publish to")
	// ErrNotConsuming is returned by Receive on a push-only pipeline.
	ErrNotConsuming = errors.New("kafkajobs: pipeline has no topics to consume")
	// ErrInvalidConfig wraps Config or Global validation errors from New.
	ErrInvalidConfig = errors.New("kafkajobs: invalid configuration")
	// ErrDeliveryTimeout is wrapped by Publish errors of jobs that were
	// not acknowledged within producer_options.delivery_timeout.
	ErrDeliveryTimeout = errors.New("kafkajobs: delivery timeout")
	// ErrUnreachable wraps the failed connectivity check of New.
	ErrUnreachable = errors.New("kafkajobs: brokers unreachable")
)

// Driver is one kafka pipeline: a producer, and a consumer (in a group,
// or reading partitions directly) when the pipeline has topics or
// partitions. It implements consumer.Consumer, consumer.Publisher,
// consumer.Stater, consumer.Checker, consumer.ReadyReceiver and
// consumer.OldestReadyReporter. All methods are safe for concurrent use.
type Driver struct {
	name       string
	cfg        Config
	deadLetter string
	log        *slog.Logger
	client     *kgo.Client

	prod *producer
	cons *consumerState // nil for a push-only pipeline
	conn connHealth

	baseOpts []kgo.Opt // client options without consuming: the dead-letter reader's
	dlq      deadState // failed jobs (deadstore.go)

	cancel context.CancelFunc // stops the poller, committer and dead-letter retrier
	wg     sync.WaitGroup     // poller, committer and dead-letter retrier

	closeOnce sync.Once
	closeErr  error
}

var (
	_ consumer.Consumer      = (*Driver)(nil)
	_ consumer.Publisher     = (*Driver)(nil)
	_ consumer.Stater        = (*Driver)(nil)
	_ consumer.Checker       = (*Driver)(nil)
	_ consumer.ReadyReceiver = (*Driver)(nil)
)

// New connects to the brokers of g (with the pipeline's own brokers, tls,
// sasl and ping in their place, see Global.Connection) and returns the
// driver of pipeline name. It validates g and cfg (after applying their
// defaults to copies), logs cfg's warnings, checks that a broker answers
// within the ping timeout, and, when cfg has topics or partitions, starts
// consuming in the background: in cfg.GroupOptions.GroupID, or without a
// group when that is empty.
// deadLetter is the topic Dead outcomes are produced to; empty means dead
// jobs are logged and dropped. log may be nil. ctx bounds only the setup.
func New(ctx context.Context, name string, g Global, cfg Config, deadLetter string, log *slog.Logger) (*Driver, error) {
	return newDriver(ctx, name, g, cfg, deadLetter, log)
}

// newDriver is New with extra client options (tests use them to shorten
// group timers).
func newDriver(ctx context.Context, name string, g Global, cfg Config, deadLetter string, log *slog.Logger, extra ...kgo.Opt) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.Defaults()
	cfgErr := cfg.Validate() // folds legacy keys first, so it runs before Connection
	g = g.Connection(cfg)
	g.Defaults()
	if err := errors.Join(g.Validate(), cfgErr); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if w := errors.Join(cfg.Warnings(), g.Warnings()); w != nil {
		for _, line := range strings.Split(w.Error(), "\n") {
			log.Warn("kafka config: "+line, "pipeline", name)
		}
	}
	d := &Driver{
		name:       name,
		cfg:        cfg,
		deadLetter: deadLetter,
		log:        log.With("pipeline", name, "driver", DriverName),
	}
	opts, err := clientOpts(g, cfg)
	if err != nil {
		return nil, err
	}
	d.baseOpts = slices.Clone(opts)
	if cfg.Consumes() {
		d.cons = newConsumerState(cfg)
		opts = append(opts, d.consumeOpts()...)
		opts = append(opts, kgo.WithHooks(d.cons.kgoBuf, d.cons.sizer),
			kgo.FetchMaxPartitionBytes(d.cons.sizer.cur))
	}
	opts = append(opts, kgo.WithHooks(&d.conn))
	opts = append(opts, extra...)
	client, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafkajobs: new client: %w", err)
	}
	d.client = client
	d.prod = newProducer(client, cfg)

	pingCtx, cancelPing := context.WithTimeout(ctx, g.Ping.Timeout)
	defer cancelPing()
	if err := client.Ping(pingCtx); err != nil {
		client.Close()
		return nil, fmt.Errorf("%w: %v: %w", ErrUnreachable, g.Brokers, err)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	d.cancel = cancel
	if d.cons != nil {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.pollLoop(runCtx) }()
		if cfg.grouped() {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.commitLoop(runCtx) }()
		}
		if deadLetter != "" {
			d.wg.Add(1)
			go func() { defer d.wg.Done(); d.deadLetterLoop(runCtx) }()
		}
	}
	return d, nil
}

// clientOpts translates the global section and the producer/consumer
// options into kgo options (without the group options).
func clientOpts(g Global, cfg Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(g.Brokers...),
		// Partitions are chosen by the driver (see producer.partition) so
		// that a failed partition is known before a record is buffered.
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
	}
	po := cfg.ProducerOptions
	switch po.RequiredAcks {
	case AcksNone:
		opts = append(opts, kgo.RequiredAcks(kgo.NoAck()))
	case AcksLeader:
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()))
	default:
		opts = append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))
	}
	if po.DisableIdempotent {
		opts = append(opts, kgo.DisableIdempotentWrite())
	}
	if po.MaxMessageBytes > 0 {
		opts = append(opts, kgo.ProducerBatchMaxBytes(po.MaxMessageBytes))
	}
	if po.RequestTimeout > 0 {
		opts = append(opts, kgo.ProduceRequestTimeout(po.RequestTimeout))
	}
	if po.DeliveryTimeout > 0 {
		opts = append(opts, kgo.RecordDeliveryTimeout(po.DeliveryTimeout))
	}
	switch po.CompressionCodec {
	case "gzip":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.GzipCompression()))
	case "snappy":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	case "lz4":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.Lz4Compression()))
	case "zstd":
		opts = append(opts, kgo.ProducerBatchCompression(kgo.ZstdCompression()))
	}
	if cfg.AutoCreateTopicsEnable {
		opts = append(opts, kgo.AllowAutoTopicCreation())
	}
	if g.TLS.enabled() {
		tc, err := tlsConfig(g.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc), kgo.DialTimeout(g.TLS.Timeout))
	}
	if g.SASL != nil {
		opts = append(opts, kgo.SASL(saslMechanism(g.SASL)))
	}
	if cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(cfg.ClientID))
	}
	co := cfg.ConsumerOptions
	opts = append(opts, kgo.FetchMaxWait(fetchMaxWait))
	if co.MaxFetchMessageSize > 0 {
		opts = append(opts, kgo.FetchMaxBytes(co.MaxFetchMessageSize))
	}
	if co.MinFetchMessageSize > 0 {
		opts = append(opts, kgo.FetchMinBytes(co.MinFetchMessageSize))
	}
	return opts, nil
}

// consumeOpts are the consuming options: the group's (whose callbacks are
// the driver's rebalance handlers), or, without a group, the topics or
// partitions read directly from their start offsets.
func (d *Driver) consumeOpts() []kgo.Opt {
	cfg := d.cfg
	if !cfg.grouped() {
		opts := []kgo.Opt{
			kgo.ConsumeStartOffset(startOffset(cfg.ConsumerOptions.ConsumerOffset)),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		}
		if topics := cfg.topics(); len(topics) > 0 {
			opts = append(opts, kgo.ConsumeTopics(topics...))
			if cfg.ConsumerOptions.ConsumeRegexp {
				opts = append(opts, kgo.ConsumeRegex())
			}
		} else {
			opts = append(opts, kgo.ConsumePartitions(kgoPartitions(cfg.partitions())))
		}
		return opts
	}
	opts := []kgo.Opt{
		kgo.ConsumerGroup(cfg.GroupOptions.GroupID),
		kgo.ConsumeTopics(cfg.topics()...),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeStartOffset(startOffset(cfg.ConsumerOptions.ConsumerOffset)),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.OnPartitionsAssigned(d.onAssigned),
		kgo.OnPartitionsRevoked(d.onRevoked),
		kgo.OnPartitionsLost(d.onLost),
	}
	if cfg.ConsumerOptions.ConsumeRegexp {
		opts = append(opts, kgo.ConsumeRegex())
	}
	if cfg.GroupOptions.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(cfg.GroupOptions.InstanceID))
	}
	session, heartbeat := cfg.groupTimers()
	if session > 0 {
		opts = append(opts, kgo.SessionTimeout(session))
	}
	if heartbeat > 0 {
		opts = append(opts, kgo.HeartbeatInterval(heartbeat))
	}
	return opts
}

func startOffset(o Offset) kgo.Offset {
	switch o.Type {
	case OffsetAtEnd:
		return kgo.NewOffset().AtEnd()
	case OffsetAt:
		return kgo.NewOffset().At(o.Value)
	case OffsetAfterMilli:
		return kgo.NewOffset().AfterMilli(o.Value)
	case OffsetRelative:
		return kgo.NewOffset().Relative(o.Value)
	case OffsetWithEpoch:
		return kgo.NewOffset().WithEpoch(int32(o.Value))
	default:
		return kgo.NewOffset().AtStart()
	}
}

func tlsConfig(t *TLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Cert != "" {
		pair, err := tls.LoadX509KeyPair(t.Cert, t.Key)
		if err != nil {
			return nil, fmt.Errorf("kafkajobs: tls key pair: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	if t.RootCA != "" {
		pem, err := os.ReadFile(t.RootCA)
		if err != nil {
			return nil, fmt.Errorf("kafkajobs: tls root_ca: %w", err)
		}
		// The CA is added to the system roots, as RoadRunner does.
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafkajobs: tls root_ca %s: no PEM certificate found", t.RootCA)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

// Close stops fetching, waits until every handed-out delivery is settled
// (or ctx is done), and, in a group, commits the done prefix of every
// partition (with up to finalCommitGrace of its own if ctx already ended)
// and leaves the group; then it closes the client. Records fetched but not handed out, records
// waiting for an in-place retry, dead records whose dead-letter copy
// is still pending (its retries stop; an outcome kgo reports after Close
// is ignored) and records whose retry copy is unanswered (likewise) are
// left uncommitted: the group delivers them again.
// Closing the client fails the records it still holds; Close waits up to
// onWireGrace for their promises. Close is idempotent; later calls
// return the first result. After Close, Receive, Publish and Settle
// return consumer.ErrClosed.
func (d *Driver) Close(ctx context.Context) error {
	d.closeOnce.Do(func() { d.closeErr = d.close(ctx) })
	return d.closeErr
}

func (d *Driver) close(ctx context.Context) error {
	d.prod.close()
	if d.cons == nil {
		d.cancel()
		d.closeClient(ctx)
		return nil
	}
	d.cons.beginClose()
	waitErr := d.cons.waitIdle(ctx)
	d.cancel()
	d.wg.Wait()
	if !d.cfg.grouped() {
		// Nothing to commit, no group to leave.
		d.cons.finishClose()
		d.closeClient(ctx)
		if waitErr != nil {
			return fmt.Errorf("kafkajobs: close %s: %w", d.name, waitErr)
		}
		return nil
	}
	// The final commit gets a short grace of its own when ctx already
	// ran out waiting: committing the done prefix spares re-running it.
	commitCtx, cancelCommit := ctx, context.CancelFunc(func() {})
	if ctx.Err() != nil {
		commitCtx, cancelCommit = context.WithTimeout(context.WithoutCancel(ctx), finalCommitGrace)
	}
	commitErr := d.commitNow(commitCtx)
	cancelCommit()
	d.cons.beginLeave()
	d.client.AllowRebalance()
	leaveErr := d.client.LeaveGroupContext(ctx)
	d.cons.finishClose()
	d.closeClient(ctx)
	if err := joinLine(waitErr, commitErr, leaveErr); err != nil {
		return fmt.Errorf("kafkajobs: close %s: %w", d.name, err)
	}
	return nil
}

// closeClient closes the client, which fails every record it still holds,
// and waits (up to onWireGrace, even when ctx is done) until the promises
// of those records returned: a dead-letter or retry copy answered late
// reports its outcome from its promise, and no promise runs driver code
// after Close.
func (d *Driver) closeClient(ctx context.Context) {
	d.client.Close()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), onWireGrace)
	defer cancel()
	if err := d.prod.waitPromises(wctx); err != nil {
		d.log.Warn("closing the client left produce promises to run", "err", err)
	}
}

// Check reports whether the driver is usable: nil when healthy,
// consumer.ErrClosed after Close, else the last failed broker connection
// (until a connection or a read succeeds again) and the last fetch or
// commit error while the consumer is failing.
func (d *Driver) Check() error {
	if d.prod.isClosed() {
		return consumer.ErrClosed
	}
	if d.cons == nil {
		return d.conn.err()
	}
	return joinLine(d.conn.err(), d.cons.health())
}

// Stat reports the broker side numbers: Ready is the lag of the assigned
// partitions (the high watermark of the last fetch past what was polled,
// or the records kgo fetched since when they are more; before anything
// was polled, the records kgo fetched) plus local records not yet handed
// out, Delayed the records waiting for a delay or an in-place retry,
// Active the records handed out and not settled. A dead record whose
// dead-letter copy is pending counts in none of them: it is settled and
// never runs again. A push-only pipeline reports -1 for Ready and
// Delayed.
func (d *Driver) Stat(context.Context) (consumer.Stat, error) {
	st := consumer.Stat{
		Pipeline: d.name,
		Driver:   DriverName,
		Queue:    strings.Join(d.consumedTopics(), ","),
		Priority: d.cfg.Priority,
		Ready:    -1,
		Delayed:  -1,
	}
	if d.prod.isClosed() {
		return st, consumer.ErrClosed
	}
	if d.cons == nil {
		return st, nil
	}
	d.cons.fillStat(&st, time.Now())
	if err := d.conn.err(); err != nil {
		st.Consuming = false
		if st.Error == "" {
			st.Error = oneLine(err.Error())
		} else {
			st.Error = oneLine(err.Error()) + "; " + st.Error
		}
	}
	return st, nil
}

// consumedTopics names the topics the pipeline consumes (Stat's Queue).
func (d *Driver) consumedTopics() []string {
	if t := d.cfg.topics(); len(t) > 0 {
		return t
	}
	return partitionTopics(d.cfg.partitions())
}
