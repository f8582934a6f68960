package kafkajobs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Default values applied by Config.Defaults and Global.Defaults.
const (
	// DefaultPriority is the pipeline priority when none is configured.
	DefaultPriority int64 = 10
	// DefaultJobHeader is the record header that names the job.
	DefaultJobHeader = "rr_job"
	// DefaultPingTimeout bounds the connectivity check New runs.
	DefaultPingTimeout = 10 * time.Second
	// DefaultDeliveryTimeout bounds how long a published record may wait
	// to be acknowledged, retries included, when
	// producer_options.delivery_timeout is not set.
	DefaultDeliveryTimeout = 30 * time.Second
	// DefaultRevokeTimeout bounds how long a rebalance waits for the
	// running jobs of revoked partitions when group_options.revoke_timeout
	// is not set.
	DefaultRevokeTimeout = 30 * time.Second
)

// Ordering says which records of a partition must run one after another.
type Ordering string

const (
	// OrderPartition hands out a partition's next record only once the
	// previous one is settled (the default).
	OrderPartition Ordering = "partition"
	// OrderKey lets records with different keys of one partition run in
	// parallel; records with the same key still run in offset order.
	OrderKey Ordering = "key"
)

// Values accepted by ProducerOptions.RequiredAcks.
const (
	AcksNone   = "NoAck"
	AcksLeader = "LeaderAck"
	AcksAll    = "AllISRAck"
)

// Values accepted by ProducerOptions.PartitioningStrategy. Every record the
// driver produces has a key (the job key, else the job id), so only
// strategies that are decided before the record is buffered are offered.
const (
	// PartitionUniform hashes the record key with Kafka's murmur2, as the
	// Java client does: one key always lands on one partition.
	PartitionUniform = "Uniform"
	// PartitionRoundRobin spreads records over partitions ignoring keys;
	// keys are then not kept in order.
	PartitionRoundRobin = "RoundRobin"
)

// Values accepted by Offset.Type (where a group without a committed offset
// starts to read).
const (
	OffsetAtStart    = "AtStart"
	OffsetAtEnd      = "AtEnd"
	OffsetAt         = "At"
	OffsetAfterMilli = "AfterMilli"
	OffsetRelative   = "Relative"
	OffsetWithEpoch  = "WithEpoch"
)

// Config holds the pipeline keys of a kafka pipeline
// (jobs.pipelines.<name>.config). The key names follow RoadRunner's kafka
// driver; Ordering, RetryTopic and JobHeader are ours.
//
// Consuming: with group_options.group_id the pipeline consumes
// consumer_options.topics in that consumer group and commits what is
// settled. Without it, as in RoadRunner, it reads the partitions directly:
// every partition of consumer_options.topics, or the partitions listed in
// consumer_options.consume_partitions, each from its own start offset.
// Nothing is committed then: settlement keeps its order and retry rules
// within the running process, and a restart reads again from
// consumer_offset (or the consume_partitions offsets).
type Config struct {
	// Priority is the pipeline priority; jobs without an rr_priority header
	// get it. Lower numbers are more urgent.
	Priority int64 `yaml:"priority"`
	// AutoCreateTopicsEnable lets producing and consuming create missing
	// topics (when the brokers allow it).
	AutoCreateTopicsEnable bool `yaml:"auto_create_topics_enable"`

	ProducerOptions ProducerOptions `yaml:"producer_options"`
	ConsumerOptions ConsumerOptions `yaml:"consumer_options"`
	GroupOptions    GroupOptions    `yaml:"group_options"`

	// Ordering is "partition" (default) or "key"; see OrderPartition and
	// OrderKey.
	Ordering Ordering `yaml:"ordering"`
	// RetryTopic, when set, turns Retry and Requeue into "produce a copy
	// to this topic with the next attempt number, then mark the record
	// done" instead of the default in-place redelivery. A copy that
	// cannot be produced falls back to an in-place retry: the attempt
	// counts, the headers are kept, and the delay is at least a second.
	// A copy the broker has not answered when Settle's wait ends is
	// awaited first: the in-place retry happens only if it fails.
	RetryTopic string `yaml:"retry_topic"`
	// JobHeader is the record header holding the job name for records
	// that lack rr_job (third-party producers). Default rr_job; when the
	// header is missing too, the job name is the topic.
	JobHeader string `yaml:"job_header"`

	// Topic is RoadRunner 2.x's single topic of a pipeline (still sent by
	// the PHP SDK 2.x's KafkaCreateInfo): the pipeline consumes it and
	// publishes to it. It stands for consumer_options.topics: [topic]
	// when consumer_options names no topics and no consume_partitions,
	// and is ignored (with a warning) otherwise.
	Topic string `yaml:"topic"`

	// Brokers, TLS, SASL and Ping override the kafka: section for this
	// pipeline, as RoadRunner reads a pipeline's config over that section;
	// SASLOptions is the name Declare (the PHP SDK) uses for SASL. See
	// Global.Connection.
	Brokers     []string `yaml:"brokers"`
	TLS         *TLS     `yaml:"tls"`
	SASL        *SASL    `yaml:"sasl"`
	SASLOptions *SASL    `yaml:"sasl_options"`
	Ping        *Ping    `yaml:"ping"`

	// Legacy holds the keys of RoadRunner 2.x's kafka driver.
	Legacy `yaml:",inline"`
}

// ProducerOptions are the producer_options keys.
type ProducerOptions struct {
	// DisableIdempotent turns off idempotent writes (on by default).
	DisableIdempotent bool `yaml:"disable_idempotent"`
	// RequiredAcks is NoAck, LeaderAck or AllISRAck (default). Anything
	// but AllISRAck needs DisableIdempotent.
	RequiredAcks string `yaml:"required_acks"`
	// MaxMessageBytes caps a record batch (franz-go default 1000012).
	MaxMessageBytes int32 `yaml:"max_message_bytes"`
	// RequestTimeout limits how long a broker may take to answer a
	// produce request (0: franz-go default).
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// TransactionTimeout is accepted for RoadRunner compatibility and has
	// no effect: the driver does not produce in transactions (neither does
	// RoadRunner's, where it has no effect either).
	TransactionTimeout time.Duration `yaml:"transaction_timeout"`
	// DeliveryTimeout limits how long a record may wait to be delivered,
	// retries included; it also bounds a whole Publish call, partition
	// lookup included, when the caller's context has no earlier deadline
	// (default DefaultDeliveryTimeout).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// CompressionCodec is gzip, snappy, lz4 or zstd (default none).
	CompressionCodec string `yaml:"compression_codec"`
	// PartitioningStrategy is Uniform (default) or RoundRobin. Manual,
	// LeastBackup and Sticky are accepted for RoadRunner compatibility and
	// work as Uniform (with a warning): they would not keep a job key on
	// one partition.
	PartitioningStrategy string `yaml:"partitioning_strategy"`

	LegacyProducer `yaml:",inline"`
}

// ConsumerOptions are the consumer_options keys.
type ConsumerOptions struct {
	// Topics to consume. The first topic is also where Publish writes.
	// Empty (and no ConsumePartitions, no Config.Topic) means a push-only
	// pipeline.
	Topics []string `yaml:"topics"`
	// ConsumePartitions lists, per topic, the partitions to consume and
	// where each starts; used only when Topics is empty, and only
	// without a consumer group (as in RoadRunner). Publish then writes to
	// the first of these topics (sorted by name).
	ConsumePartitions map[string]PartitionOffsets `yaml:"consume_partitions"`
	// ConsumeRegexp treats Topics as regular expressions (consume only).
	ConsumeRegexp bool `yaml:"consume_regexp"`
	// MaxFetchMessageSize is the fetch.max.bytes of the consumer.
	MaxFetchMessageSize int32 `yaml:"max_fetch_message_size"`
	// MinFetchMessageSize is the fetch.min.bytes of the consumer.
	MinFetchMessageSize int32 `yaml:"min_fetch_message_size"`
	// ConsumerOffset is where a partition of Topics starts when it has no
	// committed offset in the group, or always without a group (default
	// AtStart).
	ConsumerOffset Offset `yaml:"consumer_offset"`

	LegacyConsumer `yaml:",inline"`
}

// Offset is a start position: Type is one of the Offset* constants and
// Value its argument (an offset, a Unix millisecond, a relative count or an
// epoch).
type Offset struct {
	Type  string `yaml:"type"`
	Value int64  `yaml:"value"`
}

// GroupOptions are the group_options keys.
type GroupOptions struct {
	// GroupID is the consumer group; empty means the partitions are read
	// directly, without a group and without commits (see Config).
	GroupID string `yaml:"group_id"`
	// InstanceID turns on static membership (KIP-345).
	InstanceID string `yaml:"instance_id"`
	// BlockRebalanceOnPoll is accepted for RoadRunner compatibility; the
	// driver always blocks rebalances while it files polled records.
	BlockRebalanceOnPoll bool `yaml:"block_rebalance_on_poll"`
	// RevokeTimeout bounds how long a rebalance that takes partitions
	// away waits for their handed-out jobs to be settled before the done
	// prefix is committed and the partitions are given up (default
	// DefaultRevokeTimeout; the wait also ends a second before the
	// group's rebalance timeout). Jobs still running then are handed to
	// the new owner as well.
	RevokeTimeout time.Duration `yaml:"revoke_timeout"`
}

// Defaults fills in zero fields with their default values.
func (c *Config) Defaults() {
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Ordering == "" {
		c.Ordering = OrderPartition
	}
	if c.JobHeader == "" {
		c.JobHeader = DefaultJobHeader
	}
	if c.ProducerOptions.RequiredAcks == "" {
		c.ProducerOptions.RequiredAcks = AcksAll
	}
	if c.ProducerOptions.PartitioningStrategy == "" {
		c.ProducerOptions.PartitioningStrategy = PartitionUniform
	}
	if c.ConsumerOptions.ConsumerOffset.Type == "" {
		c.ConsumerOptions.ConsumerOffset.Type = OffsetAtStart
	}
	if c.ProducerOptions.DeliveryTimeout == 0 {
		c.ProducerOptions.DeliveryTimeout = DefaultDeliveryTimeout
	}
	if c.GroupOptions.RevokeTimeout == 0 {
		c.GroupOptions.RevokeTimeout = DefaultRevokeTimeout
	}
}

// Consumes reports whether the pipeline is configured to consume (it has
// topics or partitions); a pipeline without them can only publish.
func (c *Config) Consumes() bool {
	return len(c.topics()) > 0 || len(c.partitions()) > 0
}

// grouped reports whether the pipeline consumes in a consumer group.
func (c *Config) grouped() bool { return c.GroupOptions.GroupID != "" }

// topics returns the topics consumed whole: consumer_options.topics, else
// the legacy topic when no partitions are listed.
func (c *Config) topics() []string {
	co := c.ConsumerOptions
	if len(co.Topics) > 0 {
		return co.Topics
	}
	if c.Topic != "" && len(co.ConsumePartitions) == 0 {
		return []string{c.Topic}
	}
	return nil
}

// partitions returns consume_partitions when it is used (no topics).
func (c *Config) partitions() map[string]PartitionOffsets {
	if len(c.ConsumerOptions.Topics) > 0 {
		return nil
	}
	return c.ConsumerOptions.ConsumePartitions
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; it returns nil when the config is usable. Call Defaults
// first: zero values are reported as invalid. It first folds the
// RoadRunner 2.x keys (Legacy) into their current keys, which changes c.
func (c *Config) Validate() error {
	c.fold()
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if c.Priority <= 0 {
		add("priority", "must be positive, got %d", c.Priority)
	}
	if c.Ordering != OrderPartition && c.Ordering != OrderKey {
		add("ordering", "must be %q or %q, got %q", OrderPartition, OrderKey, c.Ordering)
	}
	if strings.TrimSpace(c.JobHeader) == "" {
		add("job_header", "must not be empty")
	}

	po := c.ProducerOptions
	switch po.RequiredAcks {
	case AcksAll:
	case AcksNone, AcksLeader:
		if !po.DisableIdempotent {
			add("producer_options.required_acks", "%s needs producer_options.disable_idempotent: true (idempotent writes require AllISRAck)", po.RequiredAcks)
		}
	default:
		add("producer_options.required_acks", "must be one of %s, %s, %s; got %q", AcksNone, AcksLeader, AcksAll, po.RequiredAcks)
	}
	if po.MaxMessageBytes < 0 {
		add("producer_options.max_message_bytes", "must not be negative, got %d", po.MaxMessageBytes)
	}
	if po.RequestTimeout < 0 {
		add("producer_options.request_timeout", "must not be negative, got %s", po.RequestTimeout)
	}
	if po.DeliveryTimeout <= 0 {
		add("producer_options.delivery_timeout", "must be positive, got %s", po.DeliveryTimeout)
	}
	switch po.CompressionCodec {
	case "", "gzip", "snappy", "lz4", "zstd":
	default:
		add("producer_options.compression_codec", "must be gzip, snappy, lz4 or zstd; got %q", po.CompressionCodec)
	}
	switch po.PartitioningStrategy {
	case PartitionUniform, PartitionRoundRobin, "Manual", "LeastBackup", "Sticky":
	default:
		add("producer_options.partitioning_strategy", "must be %s or %s (Manual, LeastBackup and Sticky work as %s), got %q",
			PartitionUniform, PartitionRoundRobin, PartitionUniform, po.PartitioningStrategy)
	}

	co := c.ConsumerOptions
	for i, t := range co.Topics {
		if strings.TrimSpace(t) == "" {
			add(fmt.Sprintf("consumer_options.topics[%d]", i), "must not be empty")
		}
	}
	if co.ConsumeRegexp && len(c.topics()) == 0 {
		add("consumer_options.consume_regexp", "needs consumer_options.topics")
	}
	for topic, parts := range co.ConsumePartitions {
		if strings.TrimSpace(topic) == "" {
			add("consumer_options.consume_partitions", "a topic name must not be empty")
		}
		for p, o := range parts {
			if !slices.Contains(offsetTypes, o.Type) {
				add(fmt.Sprintf("consumer_options.consume_partitions.%s.%d.type", topic, p), "must be one of %s; got %q", strings.Join(offsetTypes, ", "), o.Type)
			}
		}
	}
	if len(c.partitions()) > 0 && c.grouped() {
		add("consumer_options.consume_partitions", "cannot be used with group_options.group_id: a group assigns partitions itself (use consumer_options.topics)")
	}
	if co.MaxFetchMessageSize < 0 {
		add("consumer_options.max_fetch_message_size", "must not be negative, got %d", co.MaxFetchMessageSize)
	}
	if co.MinFetchMessageSize < 0 {
		add("consumer_options.min_fetch_message_size", "must not be negative, got %d", co.MinFetchMessageSize)
	}
	if !slices.Contains(offsetTypes, co.ConsumerOffset.Type) {
		add("consumer_options.consumer_offset.type", "must be one of %s; got %q", strings.Join(offsetTypes, ", "), co.ConsumerOffset.Type)
	}
	if c.GroupOptions.RevokeTimeout <= 0 {
		add("group_options.revoke_timeout", "must be positive, got %s", c.GroupOptions.RevokeTimeout)
	}
	if c.GroupOptions.InstanceID != "" && c.GroupOptions.GroupID == "" {
		add("group_options.instance_id", "needs group_options.group_id")
	}
	if c.RetryTopic != "" && strings.TrimSpace(c.RetryTopic) == "" {
		add("retry_topic", "must not be blank")
	}
	if po.TransactionTimeout < 0 {
		add("producer_options.transaction_timeout", "must not be negative, got %s", po.TransactionTimeout)
	}
	for i, b := range c.Brokers {
		if strings.TrimSpace(b) == "" {
			add(fmt.Sprintf("brokers[%d]", i), "must not be empty")
		}
	}
	if c.Ping != nil && c.Ping.Timeout < 0 {
		add("ping.timeout", "must not be negative, got %s", c.Ping.Timeout)
	}
	errs = append(errs, validateTLS("tls", c.TLS)...)
	errs = append(errs, validateSASL("sasl", c.SASL)...)
	errs = append(errs, validateSASL("sasl_options", c.SASLOptions)...)
	errs = append(errs, c.Legacy.validate()...)
	return errors.Join(errs...)
}

// Warnings returns the settings of c that are accepted but ignored or
// replaced, as *consumer.FieldError values joined with errors.Join (nil
// when there are none). Call it after Validate.
func (c *Config) Warnings() error {
	var out []error
	warn := func(key, format string, args ...any) {
		out = append(out, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	co, po := c.ConsumerOptions, c.ProducerOptions
	if c.Topic != "" && (len(co.Topics) > 0 || (len(co.ConsumePartitions) > 0 && co.ConsumePartitions[c.Topic] == nil)) {
		warn("topic", "ignored: consumer_options names the topics")
	}
	if len(co.Topics) > 0 && len(co.ConsumePartitions) > 0 {
		warn("consumer_options.consume_partitions", "ignored: consumer_options.topics is set (as in RoadRunner, topics win)")
	}
	if c.Consumes() && !c.grouped() {
		warn("group_options.group_id", "not set: partitions are read without a consumer group and nothing is committed; "+
			"a restart reads again from consumer_offset (jobs settled before it run again)")
	}
	if po.TransactionTimeout != 0 {
		warn("producer_options.transaction_timeout", "ignored: records are not produced in transactions")
	}
	switch po.PartitioningStrategy {
	case "Manual", "LeastBackup", "Sticky":
		warn("producer_options.partitioning_strategy", "%s works as %s here: a job key always lands on one partition, so keyed jobs keep their order",
			po.PartitioningStrategy, PartitionUniform)
	}
	out = append(out, tlsWarnings("tls", c.TLS)...)
	out = append(out, c.legacyWarnings()...)
	return errors.Join(out...)
}
