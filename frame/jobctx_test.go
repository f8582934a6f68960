package frame

import (
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"testing"
)

// kafkaLike adds Kafka's members, as the kafka driver does.
type kafkaLike struct {
	topic     string
	partition int32
	offset    int64
}

func (k kafkaLike) AppendContext(b []byte) []byte {
	b = append(b, `,"topic":`...)
	b = AppendJSONString(b, k.topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(k.partition), 10)
	b = append(b, `,"offset":`...)
	return strconv.AppendInt(b, k.offset, 10)
}

// reference encodes what AppendJobContext must produce, with encoding/json.
func reference(t testing.TB, m *JobMeta) []byte {
	h := maps.Clone(m.Headers)
	if h == nil {
		h = map[string][]string{}
	}
	h[AttemptHeader] = []string{strconv.Itoa(m.Attempt)}
	jc := JobContext{ID: m.ID, Job: m.Job, Driver: m.Driver, Queue: m.Queue, Headers: h, Pipeline: m.Pipeline}
	if k, ok := m.Extra.(kafkaLike); ok {
		jc.Topic, jc.Partition, jc.Offset = k.topic, &k.partition, &k.offset
	}
	b, err := json.Marshal(&jc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkJobContext fails unless AppendJobContext(m) is valid JSON equal in
// value to the encoding/json reference and leaves m alone.
func checkJobContext(t testing.TB, m *JobMeta) {
	before := len(m.Headers)
	got := AppendJobContext(make([]byte, 3, 8), m)
	if !json.Valid(got) {
		t.Fatalf("invalid JSON: %q", got)
	}
	var gotV, wantV any
	if err := json.Unmarshal(got, &gotV); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(reference(t, m), &wantV); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotV, wantV) {
		t.Fatalf("job context\n got %s\nwant %s", got, reference(t, m))
	}
	if len(m.Headers) != before {
		t.Fatalf("AppendJobContext modified the headers")
	}
}

func TestJobContextMatchesEncodingJSON(t *testing.T) {
	for _, m := range []*JobMeta{
		{ID: "1", Job: "App\\Jobs\\Send", Driver: "memory", Pipeline: "p", Attempt: 1},
		{ID: "q\"uote", Job: "tab\there\nnew\rline", Driver: "amqp", Queue: "q<>&", Pipeline: "p\x00\x1f\x7f", Attempt: 12,
			Headers: map[string][]string{"a": {"1", "2"}, "empty": {}, "nil": nil, "ünï": {"\u2028\u2029😀"}, "bad": {"\xff\xfe"}}},
		{ID: "k", Driver: "kafka", Queue: "t", Pipeline: "p", Attempt: 3, Extra: kafkaLike{"t", -1, 1 << 40},
			Headers: map[string][]string{AttemptHeader: {"99"}, "traceparent": {"00-1-2-01"}}},
	} {
		checkJobContext(t, m)
	}
}

func FuzzJobContext(f *testing.F) {
	f.Add("id", "job", "queue", "hk", "hv", "topic", 1)
	f.Add("\x00\"\\", "\xff", "\u2028", "x-attempt", "\t", "", 0)
	f.Fuzz(func(t *testing.T, id, job, queue, hk, hv, topic string, attempt int) {
		m := &JobMeta{ID: id, Job: job, Driver: "kafka", Queue: queue, Pipeline: id + job,
			Headers: map[string][]string{hk: {hv, hk}}, Attempt: attempt}
		if topic != "" {
			m.Extra = kafkaLike{topic, 2, 7}
		}
		checkJobContext(t, m)
	})
}
