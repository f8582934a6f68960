package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strconv"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// reference encodes what payload must produce, with encoding/json.
func reference(t testing.TB, d *consumer.Delivery) []byte {
	h := cloneHeaders(d.Headers, 1)
	h[AttemptHeader] = []string{strconv.Itoa(d.Attempt)}
	jc := frame.JobContext{ID: d.ID, Job: d.Job, Driver: d.Driver, Queue: d.Queue, Headers: h, Pipeline: d.Pipeline}
	if d.Topic != "" {
		jc.Topic, jc.Partition, jc.Offset = d.Topic, &d.Partition, &d.Offset
	}
	b, err := json.Marshal(&jc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkPayload fails unless payload(d) is valid JSON equal in value to the
// encoding/json reference and leaves d alone.
func checkPayload(t testing.TB, d *consumer.Delivery) {
	before := len(d.Headers)
	pl := payload(d)
	if !json.Valid(pl.Context) {
		t.Fatalf("invalid JSON: %q", pl.Context)
	}
	var got, want any
	if err := json.Unmarshal(pl.Context, &got); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(reference(t, d), &want); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("payload context\n got %s\nwant %s", pl.Context, reference(t, d))
	}
	if len(d.Headers) != before || !bytes.Equal(pl.Body, d.Body) {
		t.Fatalf("payload modified the delivery or the body")
	}
}

func TestPayloadMatchesEncodingJSON(t *testing.T) {
	for _, d := range []*consumer.Delivery{
		{ID: "1", Job: "App\\Jobs\\Send", Driver: "memory", Pipeline: "p", Attempt: 1},
		{ID: "q\"uote", Job: "tab\there\nnew\rline", Driver: "amqp", Queue: "q<>&", Pipeline: "p\x00\x1f\x7f", Attempt: 12,
			Headers: map[string][]string{"a": {"1", "2"}, "empty": {}, "nil": nil, "ünï": {"\u2028\u2029😀"}, "bad": {"\xff\xfe"}}},
		{ID: "k", Driver: "kafka", Queue: "t", Topic: "t", Partition: -1, Offset: 1 << 40, Pipeline: "p", Attempt: 3,
			Headers: map[string][]string{AttemptHeader: {"99"}, "traceparent": {"00-1-2-01"}}},
	} {
		checkPayload(t, d)
	}
}

func FuzzPayload(f *testing.F) {
	f.Add("id", "job", "queue", "hk", "hv", "topic", 1)
	f.Add("\x00\"\\", "\xff", "\u2028", "x-attempt", "\t", "", 0)
	f.Fuzz(func(t *testing.T, id, job, queue, hk, hv, topic string, attempt int) {
		checkPayload(t, &consumer.Delivery{ID: id, Job: job, Driver: "kafka", Queue: queue, Pipeline: id + job,
			Headers: map[string][]string{hk: {hv, hk}}, Topic: topic, Partition: 2, Offset: 7, Attempt: attempt, Body: []byte(hv)})
	})
}
