package kafkajobs

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestPublishUnansweredInDoubt: the broker holds a produce request past
// the delivery timeout: Publish reports the job in doubt (not failed), and
// once the broker answers, the record is in the topic.
func TestPublishUnansweredInDoubt(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.ProducerOptions.DeliveryTimeout = time.Second
	d := open(t, c, cfg, "")
	publish(t, d, consumer.Job{ID: "warm-up", Payload: []byte("warm-up")})

	release := make(chan struct{})
	held := make(chan struct{})
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		select {
		case <-held:
		default:
			close(held)
		}
		c.SleepControl(func() { <-release })
		return nil, nil, false // then handled as usual
	})
	jobs := []consumer.Job{{ID: "held", Payload: []byte("held")}}
	err := d.Publish(testCtx(t, 20*time.Second), jobs)
	close(release)
	<-held
	rep := consumer.ReportOf(1, err)
	if len(rep.InDoubt) != 1 || !errors.Is(err, consumer.ErrInDoubt) {
		t.Fatalf("Publish of a record the broker holds = %v: report %+v, want it in doubt", err, rep)
	}
	consumeUntil(t, c, "orders", "held")
}

// TestPublishRefusedFailed: the broker answers a produce with a
// non-retriable error (INVALID_RECORD): the job is failed, not in doubt.
func TestPublishRefusedFailed(t *testing.T) {
	c := newCluster(t, 1, "orders")
	d := open(t, c, testConfig("orders"), "")
	publish(t, d, consumer.Job{ID: "warm-up"})
	c.ControlKey(int16(kmsg.Produce), func(req kmsg.Request) (kmsg.Response, error, bool) {
		return failProduce(req.(*kmsg.ProduceRequest), kerr.InvalidRecord.Code), nil, true
	})
	jobs := []consumer.Job{{ID: "a", Key: "k"}, {ID: "b", Key: "k"}}
	err := d.Publish(testCtx(t, 10*time.Second), jobs)
	if rep := consumer.ReportOf(2, err); len(rep.Failed) != 2 || errors.Is(err, consumer.ErrInDoubt) {
		t.Fatalf("Publish refused with INVALID_RECORD = %v: report %+v, want both failed", err, rep)
	}
}
