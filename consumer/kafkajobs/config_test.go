package kafkajobs

import (
	"bytes"
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/pipevisor/pipevisor/consumer"
)

func decodeStrict(t *testing.T, src string, v any) {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewBufferString(src))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode: %v", err)
	}
}

// fieldKeys returns the Key of every *consumer.FieldError joined in err.
func fieldKeys(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	var keys []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		var fe *consumer.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *consumer.FieldError", e)
		}
		keys = append(keys, fe.Key)
	}
	walk(err)
	slices.Sort(keys)
	return keys
}

func TestConfigDecodeAllKeys(t *testing.T) {
	src := `
priority: 3
auto_create_topics_enable: true
producer_options:
  disable_idempotent: true
  required_acks: LeaderAck
  max_message_bytes: 2000
  request_timeout: 5s
  delivery_timeout: 1m
  compression_codec: zstd
  partitioning_strategy: RoundRobin
consumer_options:
  topics: [orders, "orders-retry"]
  consume_regexp: false
  max_fetch_message_size: 100000
  min_fetch_message_size: 1
  consumer_offset: {type: AtEnd, value: 0}
group_options:
  group_id: g1
  instance_id: i1
  block_rebalance_on_poll: true
  revoke_timeout: 45s
ordering: key
retry_topic: orders-retry
job_header: x-job
`
	var c Config
	decodeStrict(t, src, &c)
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := Config{
		Priority:               3,
		AutoCreateTopicsEnable: true,
		ProducerOptions: ProducerOptions{
			DisableIdempotent: true, RequiredAcks: AcksLeader, MaxMessageBytes: 2000,
			RequestTimeout: 5 * time.Second, DeliveryTimeout: time.Minute,
			CompressionCodec: "zstd", PartitioningStrategy: PartitionRoundRobin,
		},
		ConsumerOptions: ConsumerOptions{
			Topics: []string{"orders", "orders-retry"}, MaxFetchMessageSize: 100000, MinFetchMessageSize: 1,
			ConsumerOffset: Offset{Type: OffsetAtEnd},
		},
		GroupOptions: GroupOptions{GroupID: "g1", InstanceID: "i1", BlockRebalanceOnPoll: true, RevokeTimeout: 45 * time.Second},
		Ordering:     OrderKey, RetryTopic: "orders-retry", JobHeader: "x-job",
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", c, want)
	}
}

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("a push-only default config must be valid: %v", err)
	}
	if c.Priority != DefaultPriority || c.Ordering != OrderPartition || c.JobHeader != DefaultJobHeader ||
		c.ProducerOptions.RequiredAcks != AcksAll || c.ProducerOptions.PartitioningStrategy != PartitionUniform ||
		c.ConsumerOptions.ConsumerOffset.Type != OffsetAtStart ||
		c.ProducerOptions.DeliveryTimeout != DefaultDeliveryTimeout || c.GroupOptions.RevokeTimeout != DefaultRevokeTimeout {
		t.Fatalf("defaults not applied: %+v", c)
	}
	if c.Consumes() {
		t.Fatal("a config without topics must not consume")
	}
}

func TestConfigValidateReportsEveryField(t *testing.T) {
	c := Config{
		Priority: -1,
		Ordering: "random",
		ProducerOptions: ProducerOptions{
			RequiredAcks: AcksNone, MaxMessageBytes: -1, RequestTimeout: -time.Second,
			DeliveryTimeout: -time.Second, CompressionCodec: "brotli", PartitioningStrategy: "Random",
		},
		ConsumerOptions: ConsumerOptions{
			Topics: []string{"ok", " "}, MaxFetchMessageSize: -1, MinFetchMessageSize: -1,
			ConsumerOffset: Offset{Type: "Yesterday"},
		},
		GroupOptions: GroupOptions{InstanceID: "i", RevokeTimeout: -time.Second},
		JobHeader:    " ",
	}
	got := fieldKeys(t, c.Validate())
	want := []string{
		"consumer_options.consumer_offset.type",
		"consumer_options.max_fetch_message_size",
		"consumer_options.min_fetch_message_size",
		"consumer_options.topics[1]",
		"group_options.instance_id",
		"group_options.revoke_timeout",
		"job_header",
		"ordering",
		"priority",
		"producer_options.compression_codec",
		"producer_options.delivery_timeout",
		"producer_options.max_message_bytes",
		"producer_options.partitioning_strategy",
		"producer_options.request_timeout",
		"producer_options.required_acks",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("keys\n%q\nwant\n%q", got, want)
	}
}

func TestConfigRegexpNeedsTopics(t *testing.T) {
	c := Config{ConsumerOptions: ConsumerOptions{ConsumeRegexp: true}}
	c.Defaults()
	if got := fieldKeys(t, c.Validate()); !slices.Equal(got, []string{"consumer_options.consume_regexp"}) {
		t.Fatalf("keys %q", got)
	}
}

func TestGlobalDecodeAndValidate(t *testing.T) {
	var g Global
	decodeStrict(t, `
brokers: [127.0.0.1:9092]
ping: {timeout: 3s}
tls: {key: k.pem, cert: c.pem, root_ca: ca.pem}
sasl: {mechanism: SCRAM-SHA-512, username: u, password: p}
`, &g)
	g.Defaults()
	if err := g.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if g.Ping.Timeout != 3*time.Second || g.TLS.RootCA != "ca.pem" || g.SASL.Mechanism != SASLScramSHA512 {
		t.Fatalf("decoded %+v", g)
	}

	bad := Global{Brokers: []string{""}, TLS: &TLS{Key: "k"}, SASL: &SASL{Mechanism: "oauth"}}
	bad.Defaults()
	got := fieldKeys(t, bad.Validate())
	want := []string{"brokers[0]", "sasl.mechanism", "tls"}
	if !slices.Equal(got, want) {
		t.Fatalf("keys %q want %q", got, want)
	}
	var empty Global
	empty.Defaults()
	if got := fieldKeys(t, empty.Validate()); !slices.Equal(got, []string{"brokers"}) {
		t.Fatalf("keys %q", got)
	}
}

// TestRoadRunner2Config: a RoadRunner 2.x kafka config (addrs; topic,
// partitions_offsets, nested producer and consumer keys, create_topics)
// decodes and folds into the current keys.
func TestRoadRunner2Config(t *testing.T) {
	var g Global
	decodeStrict(t, `addrs: ["127.0.0.1:9092"]`, &g)
	g.Defaults()
	if err := g.Validate(); err != nil || !slices.Equal(g.Brokers, []string{"127.0.0.1:9092"}) {
		t.Fatalf("addrs: brokers %v, %v", g.Brokers, err)
	}
	var c Config
	c.Defaults()
	decodeStrict(t, `
priority: 1
topic: orders
partitions_offsets: {0: -1, 2: 7}
max_open_requests: 5
client_id: shop
kafka_version: 3.1.0
create_topics:
  replication_factor: 1
  replica_assignment: {0: [1]}
  config_entries: {"retention.ms": "1000"}
producer_options:
  max_message_bytes: 1000
  required_acks: 1
  timeout: 3
  compression_codec: none
  compression_level: 5
  idempotent: false
consumer_options:
  max_fetch_message_size: 50000
  min_fetch_message_size: 1
  session_timeout: 10
  heartbeat_interval: 2
`, &c)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	po := c.ProducerOptions
	if po.RequiredAcks != AcksLeader || !po.DisableIdempotent || po.RequestTimeout != 3*time.Second || po.CompressionCodec != "" || po.MaxMessageBytes != 1000 {
		t.Fatalf("producer_options became %+v", po)
	}
	want := map[string]PartitionOffsets{"orders": {0: {Type: OffsetAtEnd}, 2: {Type: OffsetAt, Value: 7}}}
	if !reflect.DeepEqual(c.ConsumerOptions.ConsumePartitions, want) || c.ClientID != "shop" {
		t.Fatalf("consume_partitions %v client_id %q", c.ConsumerOptions.ConsumePartitions, c.ClientID)
	}
	got := fieldKeys(t, c.Warnings())
	wantWarn := []string{"compression_level", "create_topics", "group_options.group_id", "kafka_version", "max_open_requests", "session_timeout"}
	if !slices.Equal(got, wantWarn) {
		t.Fatalf("warnings %q, want %q", got, wantWarn)
	}
}
