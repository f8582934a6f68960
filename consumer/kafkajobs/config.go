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
	// DeliveryTimeout limits how long a record may wait to be delivered,
	// retries included; it also bounds a whole Publish call, partition
	// lookup included, when the caller's context has no earlier deadline
	// (default DefaultDeliveryTimeout).
	DeliveryTimeout time.Duration `yaml:"delivery_timeout"`
	// CompressionCodec is gzip, snappy, lz4 or zstd (default none).
	CompressionCodec string `yaml:"compression_codec"`
	// PartitioningStrategy is Uniform (default) or RoundRobin.
	PartitioningStrategy string `yaml:"partitioning_strategy"`
}

// ConsumerOptions are the consumer_options keys.
type ConsumerOptions struct {
	// Topics to consume. The first topic is also where Publish writes.
	// Empty means a push-only pipeline.
	Topics []string `yaml:"topics"`
	// ConsumeRegexp treats Topics as regular expressions (consume only).
	ConsumeRegexp bool `yaml:"consume_regexp"`
	// MaxFetchMessageSize is the fetch.max.bytes of the consumer.
	MaxFetchMessageSize int32 `yaml:"max_fetch_message_size"`
	// MinFetchMessageSize is the fetch.min.bytes of the consumer.
	MinFetchMessageSize int32 `yaml:"min_fetch_message_size"`
	// ConsumerOffset is where a group without a committed offset starts
	// (default AtStart).
	ConsumerOffset Offset `yaml:"consumer_offset"`
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
	// GroupID is the consumer group; required to consume.
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
// topics); a pipeline without topics can only publish.
func (c *Config) Consumes() bool { return len(c.ConsumerOptions.Topics) > 0 }

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; it returns nil when the config is usable. Call Defaults
// first: zero values are reported as invalid.
func (c *Config) Validate() error {
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
	case PartitionUniform, PartitionRoundRobin:
	case "Manual", "LeastBackup", "Sticky":
		add("producer_options.partitioning_strategy", "%s is not supported: every job record has a key; use %s (key hash) or %s", po.PartitioningStrategy, PartitionUniform, PartitionRoundRobin)
	default:
		add("producer_options.partitioning_strategy", "must be %s or %s, got %q", PartitionUniform, PartitionRoundRobin, po.PartitioningStrategy)
	}

	co := c.ConsumerOptions
	for i, t := range co.Topics {
		if strings.TrimSpace(t) == "" {
			add(fmt.Sprintf("consumer_options.topics[%d]", i), "must not be empty")
		}
	}
	if co.ConsumeRegexp && len(co.Topics) == 0 {
		add("consumer_options.consume_regexp", "needs consumer_options.topics")
	}
	if co.MaxFetchMessageSize < 0 {
		add("consumer_options.max_fetch_message_size", "must not be negative, got %d", co.MaxFetchMessageSize)
	}
	if co.MinFetchMessageSize < 0 {
		add("consumer_options.min_fetch_message_size", "must not be negative, got %d", co.MinFetchMessageSize)
	}
	offsetTypes := []string{OffsetAtStart, OffsetAtEnd, OffsetAt, OffsetAfterMilli, OffsetRelative, OffsetWithEpoch}
	if !slices.Contains(offsetTypes, co.ConsumerOffset.Type) {
		add("consumer_options.consumer_offset.type", "must be one of %s; got %q", strings.Join(offsetTypes, ", "), co.ConsumerOffset.Type)
	}
	if len(co.Topics) > 0 && c.GroupOptions.GroupID == "" {
		add("group_options.group_id", "is required to consume (commits need a group)")
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
	return errors.Join(errs...)
}

// Global is the top-level kafka: section shared by every kafka pipeline.
type Global struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string `yaml:"brokers"`
	Ping    Ping     `yaml:"ping"`
	// TLS, when set, dials the brokers over TLS.
	TLS *TLS `yaml:"tls"`
	// SASL, when set, authenticates every connection.
	SASL *SASL `yaml:"sasl"`
}

// Ping configures the connectivity check New runs before it returns.
type Ping struct {
	// Timeout bounds the check (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// TLS holds PEM file paths. Key and Cert go together (client
// certificate); RootCA alone verifies the brokers against a private CA.
type TLS struct {
	Key    string `yaml:"key"`
	Cert   string `yaml:"cert"`
	RootCA string `yaml:"root_ca"`
}

// SASL mechanisms accepted by SASL.Mechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// SASL holds the credentials for one SASL mechanism.
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
}

// Defaults fills in zero fields with their default values.
func (g *Global) Defaults() {
	if g.Ping.Timeout == 0 {
		g.Ping.Timeout = DefaultPingTimeout
	}
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; nil means usable. Call Defaults first.
func (g *Global) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if len(g.Brokers) == 0 {
		add("brokers", "at least one broker is required")
	}
	for i, b := range g.Brokers {
		if strings.TrimSpace(b) == "" {
			add(fmt.Sprintf("brokers[%d]", i), "must not be empty")
		}
	}
	if g.Ping.Timeout <= 0 {
		add("ping.timeout", "must be positive, got %s", g.Ping.Timeout)
	}
	if g.TLS != nil && (g.TLS.Key == "") != (g.TLS.Cert == "") {
		add("tls", "key and cert must be set together")
	}
	if g.SASL != nil {
		switch g.SASL.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			add("sasl.mechanism", "must be %s, %s or %s; got %q", SASLPlain, SASLScramSHA256, SASLScramSHA512, g.SASL.Mechanism)
		}
		if g.SASL.Username == "" {
			add("sasl.username", "is required")
		}
	}
	return errors.Join(errs...)
}
