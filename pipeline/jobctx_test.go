package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// position stands for a driver's own context members.
type position struct{}

func (position) AppendContext(b []byte) []byte {
	return append(b, `,"topic":"t","partition":2,"offset":7`...)
}

// The job frame carries the delivery's fields, its attempt, the driver's
// own members and the body unchanged (frame's tests pin the encoding).
func TestPayloadCarriesTheDelivery(t *testing.T) {
	d := &consumer.Delivery{ID: "1", Job: "j", Driver: "kafka", Queue: "q", Pipeline: "p", Attempt: 4,
		Headers: map[string][]string{"h": {"v"}}, Body: []byte("body"), Context: position{}}
	pl := appendPayload(nil, d)
	var got frame.JobContext
	if err := json.Unmarshal(pl.Context, &got); err != nil {
		t.Fatalf("%v in %s", err, pl.Context)
	}
	p, o := int32(2), int64(7)
	want := frame.JobContext{ID: "1", Job: "j", Driver: "kafka", Queue: "q", Pipeline: "p", Topic: "t", Partition: &p, Offset: &o,
		Headers: map[string][]string{"h": {"v"}, frame.AttemptHeader: {"4"}}}
	if !reflect.DeepEqual(got, want) || !bytes.Equal(pl.Body, d.Body) {
		t.Fatalf("payload %s / %q, want %+v", pl.Context, pl.Body, want)
	}
	if len(d.Headers) != 1 {
		t.Fatalf("payload modified the delivery's headers: %v", d.Headers)
	}
}
