package kafkajobs_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/kafkajobs"
)

// rrKafkaConfigs are our equivalents of RoadRunner's kafka test configs
// (roadrunner-server/kafka tests/configs/.rr-kafka-*.yaml), one each.
const rrKafkaConfigs = "../../config/testdata/roadrunner/kafka-*.yaml"

// TestRoadRunnerKafkaConfigsLoad: every file loads (validate would say
// ok), and the kafka keys RoadRunner's files rely on mean what they mean
// there.
func TestRoadRunnerKafkaConfigsLoad(t *testing.T) {
	files, err := filepath.Glob(rrKafkaConfigs)
	if err != nil || len(files) != 12 {
		t.Fatalf("found %d kafka configs (%v), want one per RoadRunner file (12)", len(files), err)
	}
	roots := map[string]*config.Root{}
	for _, f := range files {
		r, err := config.Load(f)
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(f), err)
			continue
		}
		roots[strings.TrimSuffix(filepath.Base(f), ".yaml")] = r
	}
	if t.Failed() {
		return
	}
	kafka := func(file, pipeline string) *kafkajobs.Config {
		t.Helper()
		p, ok := roots[file].Jobs.Pipelines[pipeline]
		if !ok || p.Kafka == nil {
			t.Fatalf("%s: no kafka pipeline %s", file, pipeline)
		}
		return p.Kafka
	}

	if tl := roots["kafka-tls"].Kafka.TLS; tl == nil || tl.Timeout != 7*time.Second || tl.Cert == "" {
		t.Errorf("kafka-tls: tls %+v, want timeout 7s and a client certificate", tl)
	}
	if tl := roots["kafka-tls-root-ca"].Kafka.TLS; tl.Timeout != kafkajobs.DefaultTLSTimeout || tl.RootCA == "" {
		t.Errorf("kafka-tls-root-ca: tls %+v, want the default timeout and a root CA", tl)
	}
	if got := roots["kafka-ping-failed"].Kafka.Ping.Timeout; got != 3*time.Second {
		t.Errorf("kafka-ping-failed: ping.timeout %v", got)
	}
	if k := kafka("kafka-ping-ok", "reachable"); k.Topic != "reachable-topic" || !k.Consumes() || k.GroupOptions.GroupID != "" {
		t.Errorf("kafka-ping-ok: topic %q consumes %v group %q", k.Topic, k.Consumes(), k.GroupOptions.GroupID)
	}
	if k := kafka("kafka-durability-redial", "clicks"); k.GroupOptions.GroupID != "" || !k.Consumes() {
		t.Errorf("kafka-durability-redial: a pipeline without group_options must consume without a group")
	}
	if k := kafka("kafka-durability-redial-cg", "invoices"); k.GroupOptions.GroupID != "billing" || !k.GroupOptions.BlockRebalanceOnPoll {
		t.Errorf("kafka-durability-redial-cg: group_options %+v", k.GroupOptions)
	}
	replay := kafka("kafka-init", "replay").ConsumerOptions.ConsumePartitions
	if o := replay["audit-archive"][1]; o != (kafkajobs.Offset{Type: kafkajobs.OffsetAt, Value: 250}) {
		t.Errorf("kafka-init: consume_partitions.audit-archive.1 = %+v", o)
	}
	if o := replay["audit-late"][3]; o != (kafkajobs.Offset{Type: kafkajobs.OffsetWithEpoch, Value: 4}) {
		t.Errorf("kafka-init: consume_partitions.audit-late.3 = %+v", o)
	}
	if k := kafka("kafka-otel", "traced"); k.ProducerOptions.TransactionTimeout != 30*time.Second {
		t.Errorf("kafka-otel: transaction_timeout %v", k.ProducerOptions.TransactionTimeout)
	}
	warned := func(file, path string) bool {
		for _, w := range roots[file].Warnings {
			if w.Path == path {
				return true
			}
		}
		return false
	}
	for file, path := range map[string]string{
		"kafka-otel":        "jobs.pipelines.traced.config.producer_options.transaction_timeout",
		"kafka-tls-root-ca": "kafka.tls.client_auth_type",
		"kafka-init":        "jobs.pipelines.replay.config.group_options.group_id",
		"kafka-ping-ok":     "jobs.pipelines.reachable.config.group_options.group_id",
	} {
		if !warned(file, path) {
			t.Errorf("%s: no warning at %s (warnings: %v)", file, path, roots[file].Warnings)
		}
	}
}
