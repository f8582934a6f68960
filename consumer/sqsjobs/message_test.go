package sqsjobs

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// received turns an outgoing message into what ReceiveMessage returns.
func asReceived(o outgoing, id string, count string) types.Message {
	return types.Message{
		MessageId:         aws.String(id),
		Body:              aws.String(o.body),
		MessageAttributes: o.attrs,
		Attributes:        map[string]string{sysReceiveCount: count},
	}
}

func TestJobMessageRoundTrip(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"plain":"json"}`),
		[]byte("O:8:\"App\\Mail\":1:{s:7:\"\x00*\x00name\";}\xff\xfe"),
		[]byte("tab\tnewline\n emoji \U0001F600"),
		{},
		[]byte("-"),
	}
	for _, body := range bodies {
		headers := map[string][]string{"x-multi": {"a", "b"}}
		o := jobMessage("id-1", `App\Jobs\Mail`, "orders", body, headers, 3, true, 2)
		if !validBody([]byte(o.body)) {
			t.Fatalf("body %q sent as %q, which SQS refuses", body, o.body)
		}
		md := readMessage(asReceived(o, "mid", "4"), "queue", 10)
		if md.id != "id-1" || md.job != `App\Jobs\Mail` || md.pipeline != "orders" || md.priority != 3 || !md.autoAck {
			t.Errorf("identity lost: %+v", md)
		}
		if string(md.body) != string(body) {
			t.Errorf("body %q came back as %q", body, md.body)
		}
		if !slices.Equal(md.headers["x-multi"], []string{"a", "b"}) || len(md.headers) != 1 {
			t.Errorf("headers %v", md.headers)
		}
		if md.attempt != 6 {
			t.Errorf("attempt %d, want 2 spent + receive count 4", md.attempt)
		}
	}
}

func TestValidBody(t *testing.T) {
	for in, want := range map[string]bool{
		"hello":            true,
		"\t\r\n":           true,
		"\x00":             false,
		"\x1f":             false,
		"\xff":             false,
		"\uFFFE":           false,
		"\U0010FFFF":       true,
		"caf\u00e9 \u4e2d": true,
	} {
		if got := validBody([]byte(in)); got != want {
			t.Errorf("validBody(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestCopyMessageKeepsForeignAttributes(t *testing.T) {
	m := types.Message{
		MessageId: aws.String("mid"),
		Body:      aws.String("b"),
		MessageAttributes: map[string]types.MessageAttributeValue{
			"trace": {DataType: aws.String("Binary"), BinaryValue: []byte{1, 2}},
		},
		Attributes: map[string]string{sysReceiveCount: "1"},
	}
	md := readMessage(m, "q", 10)
	out := copyMessage(m, md, map[string][]string{"x": {"1"}}, 1, map[string]string{attrDeadReason: "r"})
	if _, ok := out.attrs["trace"]; !ok {
		t.Error("binary attribute of the producer dropped")
	}
	back := readMessage(asReceived(out, "mid2", "1"), "q", 10)
	if back.id != "mid" || back.job != "q" || back.attempt != 2 || !slices.Equal(back.headers["x"], []string{"1"}) {
		t.Errorf("copy reads back as %+v", back)
	}
	if aws.ToString(out.attrs[attrDeadReason].StringValue) != "r" {
		t.Error("extra attribute missing")
	}
	if len(out.attrs) > maxAttributes {
		t.Errorf("%d attributes, SQS allows %d", len(out.attrs), maxAttributes)
	}
}

func TestDedupID(t *testing.T) {
	if got := dedupID("job-1.a_b"); got != "job-1.a_b" {
		t.Errorf("dedupID kept-valid id = %q", got)
	}
	for _, id := range []string{"", "with space", strings.Repeat("x", 129), "caf\u00e9"} {
		got := dedupID(id)
		if len(got) != 64 || got == id {
			t.Errorf("dedupID(%q) = %q, want a SHA-256 hex", id, got)
		}
	}
}

func TestSecondsRoundsUp(t *testing.T) {
	for d, want := range map[time.Duration]int32{0: 0, -time.Second: 0, time.Millisecond: 1, time.Second: 1, 1001 * time.Millisecond: 2} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestHeaders(t *testing.T) {
	base := map[string][]string{"a": {"1"}, "b": {"2", "3"}}
	if !sameHeaders(base, map[string][]string{"b": {"2", "3"}}) || !sameHeaders(base, nil) {
		t.Error("unchanged headers reported as changed")
	}
	if sameHeaders(base, map[string][]string{"a": {"9"}}) || sameHeaders(base, map[string][]string{"c": {}}) {
		t.Error("changed headers reported as unchanged")
	}
}
