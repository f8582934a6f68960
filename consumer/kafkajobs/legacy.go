package kafkajobs

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer"
)

// Legacy holds the pipeline keys of RoadRunner 2.x's kafka driver, which
// the PHP SDK 2.x's KafkaCreateInfo still sends to Declare. Config.Validate
// folds the ones with a meaning here into their current keys (see fold);
// Config.Warnings names the ones that have none.
type Legacy struct {
	// GroupID is group_options.group_id (used when that is empty).
	GroupID string `yaml:"group_id"`
	// PartitionsOffsets lists the partitions of Config.Topic to consume
	// (only without a group, as in 2.x) and each one's start offset: -1 (newest) is AtEnd,
	// -2 (oldest) AtStart, any other value At(value). It becomes
	// consumer_options.consume_partitions of Topic.
	PartitionsOffsets PartitionStarts `yaml:"partitions_offsets"`
	// ClientID names this client to the brokers (kgo.ClientID).
	ClientID string `yaml:"client_id"`
	// MaxMessageBytes, RequiredAcks (0 none, 1 leader, -1 all), Timeout
	// (seconds, the produce request timeout), CompressionCodec ("none"
	// for none) and Idempotent (false disables idempotent writes, the
	// 2.x default) are the producer keys, flat as Declare sends them.
	MaxMessageBytes  *int32 `yaml:"max_message_bytes"`
	RequiredAcks     *int   `yaml:"required_acks"`
	Timeout          *int   `yaml:"timeout"`
	CompressionCodec string `yaml:"compression_codec"`
	Idempotent       *bool  `yaml:"idempotent"`
	// HeartbeatInterval and SessionTimeout (seconds) are the group's
	// timers (kgo.HeartbeatInterval, kgo.SessionTimeout).
	HeartbeatInterval int `yaml:"heartbeat_interval"`
	SessionTimeout    int `yaml:"session_timeout"`

	// Accepted without effect (Config.Warnings names them).
	MaxOpenRequests   int          `yaml:"max_open_requests"`
	Version           string       `yaml:"version"`
	KafkaVersion      string       `yaml:"kafka_version"`
	CompressionLevel  *int         `yaml:"compression_level"`
	ReplicationFactor int          `yaml:"replication_factor"`
	ReplicaAssignment any          `yaml:"replica_assignment"`
	ConfigEntries     any          `yaml:"config_entries"`
	CreateTopics      *CreateTopic `yaml:"create_topics"`
}

// CreateTopic is RoadRunner 2.x's create_topics section (topic creation
// settings); it is accepted without effect: the driver creates no topics
// itself (auto_create_topics_enable lets the brokers do it).
type CreateTopic struct {
	ReplicationFactor int `yaml:"replication_factor"`
	ReplicaAssignment any `yaml:"replica_assignment"`
	ConfigEntries     any `yaml:"config_entries"`
}

// LegacyProducer holds RoadRunner 2.x producer_options keys that the
// current driver has no key for.
type LegacyProducer struct {
	// Timeout (seconds) is the produce request timeout (request_timeout).
	Timeout int `yaml:"timeout"`
	// Idempotent false (the 2.x default) disables idempotent writes.
	Idempotent *bool `yaml:"idempotent"`
	// CompressionLevel is accepted without effect.
	CompressionLevel *int `yaml:"compression_level"`
}

// LegacyConsumer holds RoadRunner 2.x consumer_options keys.
type LegacyConsumer struct {
	// SessionTimeout and HeartbeatInterval (seconds) are the group's
	// timers.
	SessionTimeout    int `yaml:"session_timeout"`
	HeartbeatInterval int `yaml:"heartbeat_interval"`
}

// PartitionStarts maps a partition to a start offset (RoadRunner 2.x's
// partitions_offsets). It decodes from a mapping ({0: -2}) or from a list
// whose index is the partition ([-2, 5]), the PHP SDK's json_encode of
// partitions 0..n-1.
type PartitionStarts map[int32]int64

// UnmarshalYAML implements yaml.Unmarshaler (see PartitionStarts).
func (ps *PartitionStarts) UnmarshalYAML(n *yaml.Node) error {
	out := PartitionStarts{}
	put := func(key string, v *yaml.Node) error {
		p, err := strconv.ParseInt(key, 10, 32)
		if err != nil || p < 0 {
			return fmt.Errorf("partition %q: must be a partition number (0 or more)", key)
		}
		off, err := strconv.ParseInt(v.Value, 10, 64)
		if v.Kind != yaml.ScalarNode || err != nil {
			return fmt.Errorf("partition %d: the offset must be an integer (-1 newest, -2 oldest)", p)
		}
		out[int32(p)] = off
		return nil
	}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := put(n.Content[i].Value, n.Content[i+1]); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			if err := put(strconv.Itoa(i), v); err != nil {
				return err
			}
		}
	default:
		return errors.New("expected a mapping of partition numbers to offsets ({0: -2})")
	}
	*ps = out
	return nil
}

// offsetOfStart translates a 2.x start offset.
func offsetOfStart(v int64) Offset {
	switch v {
	case -1:
		return Offset{Type: OffsetAtEnd}
	case -2:
		return Offset{Type: OffsetAtStart}
	default:
		return Offset{Type: OffsetAt, Value: v}
	}
}

// fold writes the legacy keys with a meaning into their current keys of
// c. It is idempotent; Validate calls it first.
func (c *Config) fold() {
	l := c.Legacy
	if c.GroupOptions.GroupID == "" && l.GroupID != "" {
		c.GroupOptions.GroupID = l.GroupID
	}
	if len(l.PartitionsOffsets) > 0 && c.Topic != "" && !c.grouped() && len(c.ConsumerOptions.Topics) == 0 && c.ConsumerOptions.ConsumePartitions == nil {
		parts := PartitionOffsets{}
		for p, v := range l.PartitionsOffsets {
			parts[p] = offsetOfStart(v)
		}
		c.ConsumerOptions.ConsumePartitions = map[string]PartitionOffsets{c.Topic: parts}
	}
	po := &c.ProducerOptions
	if l.MaxMessageBytes != nil && po.MaxMessageBytes == 0 {
		po.MaxMessageBytes = *l.MaxMessageBytes
	}
	if l.RequiredAcks != nil {
		po.RequiredAcks = strconv.Itoa(*l.RequiredAcks)
	}
	switch po.RequiredAcks {
	case "0":
		po.RequiredAcks = AcksNone
	case "1":
		po.RequiredAcks = AcksLeader
	case "-1":
		po.RequiredAcks = AcksAll
	}
	if l.Timeout != nil && po.RequestTimeout == 0 {
		po.RequestTimeout = time.Duration(*l.Timeout) * time.Second
	}
	if po.Timeout > 0 && po.RequestTimeout == 0 {
		po.RequestTimeout = time.Duration(po.Timeout) * time.Second
	}
	if l.CompressionCodec != "" && po.CompressionCodec == "" {
		po.CompressionCodec = l.CompressionCodec
	}
	if po.CompressionCodec == "none" {
		po.CompressionCodec = ""
	}
	for _, idem := range []*bool{l.Idempotent, po.Idempotent} {
		if idem != nil && !*idem {
			po.DisableIdempotent = true
		}
	}
}

// groupTimers returns the legacy session timeout and heartbeat interval
// (zero when not set).
func (c *Config) groupTimers() (session, heartbeat time.Duration) {
	s, h := c.Legacy.SessionTimeout, c.Legacy.HeartbeatInterval
	if s == 0 {
		s = c.ConsumerOptions.SessionTimeout
	}
	if h == 0 {
		h = c.ConsumerOptions.HeartbeatInterval
	}
	return time.Duration(s) * time.Second, time.Duration(h) * time.Second
}

// validate checks the legacy keys that fold cannot translate.
func (l *Legacy) validate() []error {
	var errs []error
	if l.RequiredAcks != nil {
		switch *l.RequiredAcks {
		case 0, 1, -1:
		default:
			errs = append(errs, &consumer.FieldError{Key: "required_acks", Reason: fmt.Sprintf("must be 0 (none), 1 (leader) or -1 (all), got %d", *l.RequiredAcks)})
		}
	}
	for _, kv := range []struct {
		key string
		v   int
	}{{"session_timeout", l.SessionTimeout}, {"heartbeat_interval", l.HeartbeatInterval}} {
		if kv.v < 0 {
			errs = append(errs, &consumer.FieldError{Key: kv.key, Reason: fmt.Sprintf("must not be negative, got %d", kv.v)})
		}
	}
	return errs
}

// legacyWarnings names the legacy keys that are accepted without effect.
func (c *Config) legacyWarnings() []error {
	l := c.Legacy
	var out []error
	warn := func(key, reason string) {
		out = append(out, &consumer.FieldError{Key: key, Reason: reason})
	}
	if l.MaxOpenRequests != 0 {
		warn("max_open_requests", "ignored (RoadRunner 2.x key): franz-go manages in-flight requests itself")
	}
	if l.Version != "" {
		warn("version", "ignored (RoadRunner 2.x key): protocol versions are negotiated with the brokers")
	}
	if l.KafkaVersion != "" {
		warn("kafka_version", "ignored (RoadRunner 2.x key): protocol versions are negotiated with the brokers")
	}
	if l.CompressionLevel != nil || c.ProducerOptions.CompressionLevel != nil {
		warn("compression_level", "ignored (RoadRunner 2.x key): each codec's default level is used")
	}
	if l.ReplicationFactor != 0 || l.ReplicaAssignment != nil || l.ConfigEntries != nil || l.CreateTopics != nil {
		warn("create_topics", "ignored (RoadRunner 2.x topic creation: replication_factor, replica_assignment, config_entries): create topics beforehand, or let the brokers create them with auto_create_topics_enable")
	}
	switch {
	case len(l.PartitionsOffsets) == 0:
	case c.Topic == "":
		warn("partitions_offsets", "ignored: it needs topic")
	case c.grouped():
		warn("partitions_offsets", "ignored in a consumer group: the group assigns partitions, and a partition without a commit starts at consumer_offset")
	}
	if s, h := c.groupTimers(); (s > 0 || h > 0) && !c.grouped() {
		warn("session_timeout", "ignored without a consumer group (session_timeout, heartbeat_interval)")
	}
	return out
}
