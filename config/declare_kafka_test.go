package config

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
)

// The maps below are exactly what the PHP SDK sends to jobs.Declare for a
// KafkaCreateInfo (its toArray() through Jobs::toStringOfStringMap), taken
// by running the SDK's own classes: 4.x (ProducerOptions, ConsumerOptions,
// ConsumerGroupOptions as JSON) and 2.x (RoadRunner 2.x's flat keys).

// declareKafka runs PipelineFromDeclare and fails on an error.
func declareKafka(t *testing.T, m map[string]string) Pipeline {
	t.Helper()
	p, err := PipelineFromDeclare(m)
	if err != nil {
		t.Fatalf("PipelineFromDeclare: %v", err)
	}
	if p.Driver != DriverKafka || p.Kafka == nil {
		t.Fatalf("driver %q, kafka config %v", p.Driver, p.Kafka)
	}
	return p
}

// warningPaths returns the paths of p's warnings, sorted.
func warningPaths(p Pipeline) []string {
	var out []string
	for _, w := range p.Warnings {
		out = append(out, w.Path)
	}
	slices.Sort(out)
	return out
}

// KafkaCreateInfo('kafka-declared', 3, true, new ProducerOptions(true,
// Acks::LeaderAck, 2000, PT5S, PT20S, PT40S, CompressionCodec::Zstd),
// new ConsumerOptions(['declared-topic']),
// new ConsumerGroupOptions('declared-group', true)) with SDK 4.x.
func TestDeclareKafkaCreateInfoSDK4(t *testing.T) {
	p := declareKafka(t, map[string]string{
		"name":                      "kafka-declared",
		"driver":                    "kafka",
		"priority":                  "3",
		"auto_create_topics_enable": "true",
		"producer_options":          `{"disable_idempotent":true,"max_message_bytes":2000,"request_timeout":"5s","delivery_timeout":"20s","transaction_timeout":"40s","required_acks":"LeaderAck","compression_codec":"zstd"}`,
		"consumer_options":          `{"topics":["declared-topic"],"consume_regexp":false,"max_fetch_message_size":50000,"min_fetch_message_size":1,"consumer_offset":{"type":"AtStart","value":1}}`,
		"group_options":             `{"group_id":"declared-group","block_rebalance_on_poll":true}`,
	})
	k := p.Kafka
	if p.Name != "kafka-declared" || p.Priority != 3 || k.Priority != 3 || !k.AutoCreateTopicsEnable {
		t.Fatalf("name %q priority %d/%d auto-create %v", p.Name, p.Priority, k.Priority, k.AutoCreateTopicsEnable)
	}
	po := k.ProducerOptions
	if !po.DisableIdempotent || po.RequiredAcks != kafkajobs.AcksLeader || po.MaxMessageBytes != 2000 ||
		po.RequestTimeout != 5*time.Second || po.DeliveryTimeout != 20*time.Second ||
		po.TransactionTimeout != 40*time.Second || po.CompressionCodec != "zstd" {
		t.Fatalf("producer_options %+v", po)
	}
	co := k.ConsumerOptions
	if !slices.Equal(co.Topics, []string{"declared-topic"}) || co.ConsumeRegexp || co.MaxFetchMessageSize != 50000 ||
		co.MinFetchMessageSize != 1 || co.ConsumerOffset != (kafkajobs.Offset{Type: kafkajobs.OffsetAtStart, Value: 1}) {
		t.Fatalf("consumer_options %+v", co)
	}
	if k.GroupOptions.GroupID != "declared-group" || !k.GroupOptions.BlockRebalanceOnPoll || !k.Consumes() {
		t.Fatalf("group_options %+v", k.GroupOptions)
	}
	if got := warningPaths(p); !slices.Equal(got, []string{"producer_options.transaction_timeout"}) {
		t.Fatalf("warnings %v", p.Warnings)
	}
}

// KafkaCreateInfo(name: 'kafka-partitions', consumerOptions: new
// ConsumerOptions(consumePartitions: [events/0 At 7, events/1 AtEnd,
// audit/2 AfterMilli])): json_encode writes the partitions 0..1 of events
// as a list and partition 2 of audit as an object.
func TestDeclareKafkaConsumePartitionsSDK4(t *testing.T) {
	p := declareKafka(t, map[string]string{
		"name":                      "kafka-partitions",
		"driver":                    "kafka",
		"priority":                  "10",
		"auto_create_topics_enable": "false",
		"consumer_options":          `{"topics":[],"consume_regexp":false,"max_fetch_message_size":50000,"min_fetch_message_size":1,"consumer_offset":{"type":"AtStart","value":1},"consume_partitions":{"events":[{"type":"At","value":7},{"type":"AtEnd"}],"audit":{"2":{"type":"AfterMilli","value":1700000000000}}}}`,
	})
	want := map[string]kafkajobs.PartitionOffsets{
		"events": {0: {Type: kafkajobs.OffsetAt, Value: 7}, 1: {Type: kafkajobs.OffsetAtEnd}},
		"audit":  {2: {Type: kafkajobs.OffsetAfterMilli, Value: 1700000000000}},
	}
	if got := p.Kafka.ConsumerOptions.ConsumePartitions; !reflect.DeepEqual(got, want) {
		t.Fatalf("consume_partitions %v, want %v", got, want)
	}
	if !p.Kafka.Consumes() || p.Kafka.GroupOptions.GroupID != "" {
		t.Fatalf("consumes %v group %q", p.Kafka.Consumes(), p.Kafka.GroupOptions.GroupID)
	}
	if got := warningPaths(p); !slices.Equal(got, []string{"group_options.group_id"}) {
		t.Fatalf("warnings %v", p.Warnings)
	}
}

// KafkaCreateInfo(name: 'kafka-defaults', producerOptions: new
// ProducerOptions(), consumerOptions: new ConsumerOptions(['t']),
// groupOptions: new ConsumerGroupOptions()): group_id is sent as null,
// which means no group (a warning says so).
func TestDeclareKafkaNullGroupSDK4(t *testing.T) {
	p := declareKafka(t, map[string]string{
		"name":                      "kafka-defaults",
		"driver":                    "kafka",
		"priority":                  "10",
		"auto_create_topics_enable": "false",
		"producer_options":          `{"disable_idempotent":false,"max_message_bytes":1000012,"required_acks":"AllISRAck"}`,
		"consumer_options":          `{"topics":["t"],"consume_regexp":false,"max_fetch_message_size":50000,"min_fetch_message_size":1,"consumer_offset":{"type":"AtStart","value":1}}`,
		"group_options":             `{"group_id":null,"block_rebalance_on_poll":false}`,
	})
	k := p.Kafka
	if k.GroupOptions.GroupID != "" || k.ProducerOptions.RequiredAcks != kafkajobs.AcksAll || k.ProducerOptions.MaxMessageBytes != 1000012 {
		t.Fatalf("config %+v", k)
	}
	if got := warningPaths(p); !slices.Equal(got, []string{"group_options.group_id"}) {
		t.Fatalf("warnings %v", p.Warnings)
	}
}

// new KafkaCreateInfo('kafka-legacy', 'legacy-topic', 2, groupId: "",
// [0 => -2, 1 => 5], 5, 'my-app', '3.2.0.0', 1, [0 => [1]],
// ['retention.ms' => '60000']) with SDK 2.x, written for RoadRunner
// 2.x's kafka driver.
func TestDeclareKafkaCreateInfoSDK2(t *testing.T) {
	p := declareKafka(t, map[string]string{
		"name":               "kafka-legacy",
		"driver":             "kafka",
		"priority":           "2",
		"topic":              "legacy-topic",
		"group_id":           "",
		"max_open_requests":  "5",
		"client_id":          "my-app",
		"version":            "3.2.0.0",
		"replication_factor": "1",
		"max_message_bytes":  "1000000",
		"required_acks":      "1",
		"timeout":            "10",
		"compression_codec":  "snappy",
		"compression_level":  "100",
		"idempotent":         "false",
		"heartbeat_interval": "3",
		"session_timeout":    "10",
		"partitions_offsets": "[-2,5]",
		"replica_assignment": "[[1]]",
		"config_entries":     `{"retention.ms":"60000"}`,
	})
	k := p.Kafka
	if k.Topic != "legacy-topic" || k.ClientID != "my-app" || k.GroupOptions.GroupID != "" || p.Priority != 2 {
		t.Fatalf("config %+v", k)
	}
	wantParts := map[string]kafkajobs.PartitionOffsets{
		"legacy-topic": {0: {Type: kafkajobs.OffsetAtStart}, 1: {Type: kafkajobs.OffsetAt, Value: 5}},
	}
	if got := k.ConsumerOptions.ConsumePartitions; !reflect.DeepEqual(got, wantParts) {
		t.Fatalf("partitions_offsets became consume_partitions %v, want %v", got, wantParts)
	}
	po := k.ProducerOptions
	if po.RequiredAcks != kafkajobs.AcksLeader || !po.DisableIdempotent || po.RequestTimeout != 10*time.Second ||
		po.CompressionCodec != "snappy" || po.MaxMessageBytes != 1000000 {
		t.Fatalf("producer keys became %+v", po)
	}
	want := []string{"compression_level", "create_topics", "group_options.group_id", "max_open_requests", "session_timeout", "version"}
	if got := warningPaths(p); !slices.Equal(got, want) {
		t.Fatalf("warnings %v, want paths %v", p.Warnings, want)
	}
}

// new KafkaCreateInfo('kafka-legacy-group', 'legacy-grouped', 10,
// 'legacy-group') with SDK 2.x: the topic is consumed in the group.
func TestDeclareKafkaCreateInfoSDK2Group(t *testing.T) {
	p := declareKafka(t, map[string]string{
		"name":               "kafka-legacy-group",
		"driver":             "kafka",
		"priority":           "10",
		"topic":              "legacy-grouped",
		"group_id":           "legacy-group",
		"max_open_requests":  "5",
		"client_id":          "roadrunner",
		"version":            "3.2.0.0",
		"replication_factor": "1",
		"max_message_bytes":  "1000000",
		"required_acks":      "1",
		"timeout":            "10",
		"compression_codec":  "snappy",
		"compression_level":  "100",
		"idempotent":         "false",
		"heartbeat_interval": "3",
		"session_timeout":    "10",
	})
	k := p.Kafka
	if k.GroupOptions.GroupID != "legacy-group" || !k.Consumes() || k.ConsumerOptions.ConsumePartitions != nil {
		t.Fatalf("config %+v", k)
	}
	want := []string{"compression_level", "create_topics", "max_open_requests", "version"}
	if got := warningPaths(p); !slices.Equal(got, want) {
		t.Fatalf("warnings %v, want paths %v", p.Warnings, want)
	}
}

// Declare with an unknown kafka key is still an error that names it.
func TestDeclareKafkaUnknownKey(t *testing.T) {
	_, err := PipelineFromDeclare(map[string]string{"name": "k", "driver": "kafka", "topicz": "x"})
	errs := Errors(err)
	if len(errs) != 1 || errs[0].Path != "topicz" {
		t.Fatalf("errors %v", err)
	}
}

// The map RoadRunner's own kafka tests declare (JSON with line breaks),
// with and without group_options.
func TestDeclareKafkaRoadRunnerTestMap(t *testing.T) {
	m := map[string]string{
		"driver":                    "kafka",
		"name":                      "test-3",
		"priority":                  "3",
		"auto_create_topics_enable": "true",
		"producer_options": `{
				"max_message_bytes": 1000,
				"required_acks": "LeaderAck",
				"compression_codec": "snappy",
				"disable_idempotent": true
			}`,
		"consumer_options": `{"topics": ["test-3"], "consumer_offset": {"type": "AtStart"}}`,
	}
	p := declareKafka(t, m)
	k := p.Kafka
	if k.ProducerOptions.MaxMessageBytes != 1000 || k.ProducerOptions.RequiredAcks != kafkajobs.AcksLeader ||
		k.ProducerOptions.CompressionCodec != "snappy" || !k.ProducerOptions.DisableIdempotent ||
		!slices.Equal(k.ConsumerOptions.Topics, []string{"test-3"}) || k.GroupOptions.GroupID != "" || p.Priority != 3 {
		t.Fatalf("config %+v", k)
	}
	m["group_options"] = `{
				"group_id": "foo-bar",
				"block_rebalance_on_poll": true
			}`
	if p := declareKafka(t, m); p.Kafka.GroupOptions.GroupID != "foo-bar" || len(p.Warnings) != 0 {
		t.Fatalf("group_options %+v, warnings %v", p.Kafka.GroupOptions, p.Warnings)
	}
}
