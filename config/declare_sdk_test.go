package config

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"testing"
	"time"
)

// sdkDeclareCase is one entry of rpc/testdata/sdk/declare.json: what a
// version of RoadRunner's PHP SDK sends for a *CreateInfo.
type sdkDeclareCase struct {
	Name       string      `json:"name"`
	SDK        string      `json:"sdk"`
	CreateInfo string      `json:"create_info"`
	Pipeline   [][2]string `json:"pipeline"`
}

func loadSDKDeclares(t *testing.T) map[string]map[string]string {
	t.Helper()
	data, err := os.ReadFile("../rpc/testdata/sdk/declare.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Cases []sdkDeclareCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]string{}
	for _, c := range f.Cases {
		m := map[string]string{}
		for _, kv := range c.Pipeline {
			m[kv[0]] = kv[1]
		}
		out[c.Name] = m
	}
	return out
}

// TestDeclareEverySDKCreateInfo parses what every SDK version sends for
// each *CreateInfo and checks the meaning each key gets.
func TestDeclareEverySDKCreateInfo(t *testing.T) {
	cases := loadSDKDeclares(t)
	checks := map[string]func(t *testing.T, d Declared){
		"2.0.0_memory": func(t *testing.T, d Declared) {
			p := d.Pipeline
			if p.Name != "mem-v200" || p.Priority != 5 || p.Memory.Prefetch != 50 {
				t.Errorf("pipeline %+v memory %+v", p, p.Memory)
			}
		},
		"2.0.0_amqp": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if d.Pipeline.Name != "jobs-v200" || a.Queue != "jobs-v200" || a.RoutingKey != "jobs-v200" || a.Prefetch != 20 || a.Priority != 5 || a.Exchange != "amqp.default" {
				t.Errorf("name %q amqp %+v", d.Pipeline.Name, a)
			}
		},
		"2.0.0_sqs": func(t *testing.T, d Declared) {
			s := d.Pipeline.SQS
			if d.Pipeline.Name != "jobs-v200" || s.Queue != "jobs-v200" || s.WaitTimeSeconds != 2*time.Second || len(s.Attributes) != 0 || len(s.Tags) != 0 {
				t.Errorf("name %q sqs %+v", d.Pipeline.Name, s)
			}
		},
		"2.3.0_memory": func(t *testing.T, d Declared) {
			if d.Pipeline.Name != "mem-v230" || d.Pipeline.Memory.Prefetch != 50 {
				t.Errorf("pipeline %+v", d.Pipeline)
			}
		},
		"2.3.0_amqp": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if d.Pipeline.Name != "amqp-v230" || a.Queue != "jobs-v230" || !a.Durable || a.Prefetch != 100 {
				t.Errorf("amqp %+v", a)
			}
		},
		"2.6.0_sqs": func(t *testing.T, d Declared) {
			s := d.Pipeline.SQS
			if !reflect.DeepEqual(s.Attributes, map[string]string{"MessageRetentionPeriod": "3600"}) ||
				!reflect.DeepEqual(s.Tags, map[string]string{"team": "billing"}) || s.WaitTimeSeconds != 2*time.Second {
				t.Errorf("sqs %+v", s)
			}
		},
		"2.9.0_kafka_group": func(t *testing.T, d Declared) {
			k := d.Pipeline.Kafka
			if !k.Consumes() || k.GroupOptions.GroupID != "group-v290" {
				t.Errorf("kafka %+v", k)
			}
		},
		"2.9.0_kafka_partitions": func(t *testing.T, d Declared) {
			k := d.Pipeline.Kafka
			parts := k.ConsumerOptions.ConsumePartitions["topic-v290p"]
			if !k.Consumes() || k.GroupOptions.GroupID != "" || len(parts) != 2 || parts[0].Type != "AtStart" || parts[1].Type != "At" || parts[1].Value != 5 {
				t.Errorf("kafka consumer options %+v", k.ConsumerOptions)
			}
		},
		"4.1.0_amqp": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if len(a.QueueHeaders) != 0 || a.Queue != "jobs-v410" {
				t.Errorf("amqp %+v", a)
			}
			wantIgnored(t, d, "consume_all")
		},
		"4.1.0_amqp_headers": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if !reflect.DeepEqual(a.QueueHeaders, map[string]any{"x-max-priority": 10, "x-queue-mode": "lazy"}) {
				t.Errorf("queue_headers %#v", a.QueueHeaders)
			}
			wantIgnored(t, d, "consume_all")
		},
		"4.3.0_memory": func(t *testing.T, d Declared) {
			if d.Pipeline.Memory.Prefetch != 10 || d.Pipeline.Priority != 10 {
				t.Errorf("pipeline %+v memory %+v", d.Pipeline, d.Pipeline.Memory)
			}
		},
		"4.3.0_amqp": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if a.Queue != "default" || a.Key() != "default" || a.RedialTimeout != 60*time.Second || a.Prefetch != 100 || len(a.QueueHeaders) != 0 {
				t.Errorf("amqp %+v", a)
			}
		},
		"4.3.0_amqp_full": func(t *testing.T, d Declared) {
			a := d.Pipeline.AMQP
			if a.ExchangeType != "topic" || a.Exchange != "pipevisor.sdk" || a.RoutingKey != "jobs.v430f.#" || a.ConsumerID != "worker-v430f" ||
				!a.DeleteQueueOnStop || !a.MultipleAck || !a.Durable || !a.ExchangeDurable || a.RedialTimeout != 5*time.Second ||
				a.Priority != 3 || a.Prefetch != 16 || !reflect.DeepEqual(a.QueueHeaders, map[string]any{"x-max-priority": 10}) {
				t.Errorf("amqp %+v", a)
			}
		},
		"4.3.0_sqs": func(t *testing.T, d Declared) {
			s := d.Pipeline.SQS
			want := map[string]string{
				"MessageRetentionPeriod": "3600",
				"RedrivePolicy":          `{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dead-v430","maxReceiveCount":3}`,
			}
			if s.VisibilityTimeout != 30*time.Second || s.WaitTimeSeconds != 5*time.Second || s.Queue != "jobs-v430" || !reflect.DeepEqual(s.Attributes, want) {
				t.Errorf("sqs %+v", s)
			}
		},
		"4.3.0_sqs_fifo": func(t *testing.T, d Declared) {
			s := d.Pipeline.SQS
			if s.MessageGroupID != "group-1" || s.Queue != "jobs-v430f.fifo" {
				t.Errorf("sqs %+v", s)
			}
		},
		"4.3.0_kafka": func(t *testing.T, d Declared) {
			k := d.Pipeline.Kafka
			if k.ProducerOptions.RequestTimeout != 10*time.Second || k.ProducerOptions.CompressionCodec != "zstd" ||
				!slices.Equal(k.ConsumerOptions.Topics, []string{"topic-v430"}) || k.GroupOptions.GroupID != "group-v430" ||
				k.ConsumerOptions.MaxFetchMessageSize != 50000 {
				t.Errorf("kafka %+v", k)
			}
		},
		"4.3.0_kafka_partitions": func(t *testing.T, d Declared) {
			k := d.Pipeline.Kafka
			parts := k.ConsumerOptions.ConsumePartitions["topic-v430p"]
			if !k.AutoCreateTopicsEnable || !k.Consumes() || len(parts) != 2 || parts[0].Type != "AtStart" || parts[1].Type != "At" || parts[1].Value != 5 {
				t.Errorf("kafka %+v", k)
			}
		},
	}
	for name, m := range cases {
		t.Run(name, func(t *testing.T) {
			check, ok := checks[name]
			if !ok {
				t.Fatalf("no check for %s", name)
			}
			d, err := ParseDeclare(m)
			if err != nil {
				t.Fatalf("ParseDeclare: %v", err)
			}
			check(t, d)
		})
	}
}

func wantIgnored(t *testing.T, d Declared, key string) {
	t.Helper()
	for _, k := range d.Ignored {
		if k.Key == key && k.Reason != "" {
			return
		}
	}
	t.Errorf("%s not reported as ignored: %+v", key, d.Ignored)
}

// TestDeclareEmptyCollections checks that an empty list or map in any
// encoding means empty, for every nested key.
func TestDeclareEmptyCollections(t *testing.T) {
	for _, empty := range []string{"", "[]", "{}", " [] "} {
		d, err := ParseDeclare(map[string]string{"name": "q", "driver": "amqp", "queue": "q", "queue_headers": empty})
		if err != nil || len(d.Pipeline.AMQP.QueueHeaders) != 0 {
			t.Errorf("queue_headers %q: %v %+v", empty, err, d.Pipeline.AMQP)
		}
		d, err = ParseDeclare(map[string]string{"name": "q", "driver": "sqs", "attributes": empty, "tags": empty})
		if err != nil || len(d.Pipeline.SQS.Attributes) != 0 || len(d.Pipeline.SQS.Tags) != 0 {
			t.Errorf("attributes/tags %q: %v %+v", empty, err, d.Pipeline.SQS)
		}
		d, err = ParseDeclare(map[string]string{"name": "q", "driver": "kafka", "producer_options": empty, "consumer_options": empty, "group_options": empty})
		if err != nil || d.Pipeline.Kafka.Consumes() {
			t.Errorf("kafka options %q: %v %+v", empty, err, d.Pipeline.Kafka)
		}
	}
}

func TestDeclareRoadRunnerServerKeys(t *testing.T) {
	// wait_time (RoadRunner's declare name) wins over wait_time_seconds.
	d, err := ParseDeclare(map[string]string{"name": "q", "driver": "sqs", "wait_time": "7", "wait_time_seconds": "3"})
	if err != nil || d.Pipeline.SQS.WaitTimeSeconds != 7*time.Second {
		t.Fatalf("%v %+v", err, d.Pipeline.SQS)
	}
	wantIgnored(t, d, "wait_time_seconds")

	// Keys RoadRunner's drivers read from a declared pipeline that the
	// SDK does not send.
	d, err = ParseDeclare(map[string]string{"name": "q", "driver": "amqp", "queue": "q", "exchange_declare": "false", "queue_declare": "false"})
	if err != nil || d.Pipeline.AMQP.DeclaresExchange() || d.Pipeline.AMQP.DeclaresQueue() {
		t.Errorf("amqp exchange_declare/queue_declare: %v %+v", err, d.Pipeline.AMQP)
	}
	d, err = ParseDeclare(map[string]string{"name": "q", "driver": "sqs", "retain_failed_jobs": "true", "max_messages_in_flight": "5", "error_visibility_timeout": "10"})
	if s := d.Pipeline.SQS; err != nil || !s.RetainFailedJobs || s.MaxMessagesInFlight != 5 || s.ErrorVisibilityTimeout != 10*time.Second {
		t.Errorf("sqs keys: %v %+v", err, s)
	}
	d, err = ParseDeclare(map[string]string{"name": "q", "driver": "kafka", "sasl_options": `{"mechanism": "plain", "username": "u", "password": "p"}`})
	if err != nil || d.Pipeline.Kafka.SASLOptions == nil || d.Pipeline.Kafka.SASLOptions.Username != "u" {
		t.Errorf("kafka sasl_options: %v %+v", err, d.Pipeline.Kafka)
	}

	// A kafka timeout sent as a JSON number is nanoseconds (RoadRunner's
	// JSON decoding); a null means "not set".
	d, err = ParseDeclare(map[string]string{"name": "q", "driver": "kafka",
		"producer_options": `{"request_timeout": 2000000000, "delivery_timeout": null, "compression_codec": null}`})
	if err != nil {
		t.Fatal(err)
	}
	if po := d.Pipeline.Kafka.ProducerOptions; po.RequestTimeout != 2*time.Second || po.DeliveryTimeout == 0 || po.CompressionCodec != "" {
		t.Errorf("producer options %+v", po)
	}
}
