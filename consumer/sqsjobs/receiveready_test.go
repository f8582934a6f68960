package sqsjobs

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestStateTakeReady: takeReady hands out ready messages without
// waiting, at most max, after what dst held, leaving one for each waiting
// take and the rest of a FIFO group behind its head; when it finds
// nothing it makes the poller ask for nothing (no take waits); its max is
// added to polls for waiting takes; after Close began it does nothing.
func TestStateTakeReady(t *testing.T) {
	var s state
	s.init(10, true)
	if got := s.takeReady(nil, 3); len(got) != 0 {
		t.Fatalf("takeReady with nothing buffered = %v", got)
	}
	if n, _, _ := s.reserve(); n != 0 {
		t.Fatalf("reserve after takeReady(3) found nothing, no take waiting = %d, want 0 (nothing fetched ahead)", n)
	}
	s.waiters = 1 // a take waits: it asks for itself and the batch behind it
	if n, _, _ := s.reserve(); n != 4 {
		t.Fatalf("reserve with one take waiting, batch 3 = %d, want 4", n)
	}
	a1, a2, b1, c1 := fifoEntry("a", "a1"), fifoEntry("a", "a2"), fifoEntry("b", "b1"), fifoEntry("c", "c1")
	s.received(4, []*entry{a1, a2, b1, c1})

	// One take still waits: one ready message is left to it.
	seed := fifoEntry("x", "seed")
	got := s.takeReady([]*entry{seed}, 10)
	if !slices.Equal(got, []*entry{seed, a1, b1}) {
		t.Fatalf("takeReady(dst of 1, 10) with a1 b1 c1 ready, one take waiting = %v, want [seed a1 b1]", ids(got))
	}
	s.waiters = 0
	a3 := fifoEntry("a", "a3")
	s.received(0, []*entry{a3}) // queued behind a2
	if got := s.takeReady(nil, 1); len(got) != 1 || got[0] != c1 {
		t.Fatalf("takeReady(1) = %v, want [c1]", ids(got))
	}
	if s.active() != 3 {
		t.Fatalf("active = %d, want 3", s.active())
	}
	// Nothing ready (a2 and a3 wait behind a1), no take waits: no poll.
	if got := s.takeReady(nil, 10); len(got) != 0 {
		t.Fatalf("takeReady with a2 queued behind a1 = %v", ids(got))
	}
	if n, _, _ := s.reserve(); n != 0 {
		t.Fatalf("reserve with nothing ready and no take waiting = %d, want 0", n)
	}
	s.settled(a1, true)
	if got := s.takeReady(nil, 10); len(got) != 1 || got[0] != a2 {
		t.Fatalf("after a1 was acked takeReady = %v, want [a2] (a3 behind it)", ids(got))
	}
	s.settled(a2, true)
	if got := s.takeReady(nil, 10); len(got) != 1 || got[0] != a3 {
		t.Fatalf("after a2 was acked takeReady = %v, want [a3]", ids(got))
	}

	// Two takes wait, after a takeReady(2): each asks for 1+2.
	s.waiters = 2
	if got := s.takeReady(nil, 2); len(got) != 0 {
		t.Fatalf("takeReady with nothing buffered = %v", ids(got))
	}
	if n, _, _ := s.reserve(); n != 6 {
		t.Fatalf("reserve with 2 takes waiting, batch 2 = %d, want 6", n)
	}
	s.received(6, nil)
	s.waiters = 0

	s.beginClose()
	s.received(0, []*entry{fifoEntry("d", "d1")})
	if got := s.takeReady(nil, 10); len(got) != 0 {
		t.Fatalf("takeReady after Close began = %v", ids(got))
	}
	if n, _, ok := s.reserve(); n != 0 || ok {
		t.Fatalf("reserve after Close began = %d, %v", n, ok)
	}
}

func ids(es []*entry) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.md.id
	}
	return out
}

// pollCounter counts ReceiveMessage calls.
type pollCounter struct {
	api
	n atomic.Int64
}

func (p *pollCounter) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	p.n.Add(1)
	return p.api.ReceiveMessage(ctx, in, opts...)
}

// waitBuffered waits until d buffers n messages.
func waitBuffered(t *testing.T, d *Driver, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		d.st.mu.Lock()
		b := d.st.buffered
		d.st.mu.Unlock()
		if b == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages buffered after %v, want %d", b, timeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ackAll acks every delivery.
func ackAll(t *testing.T, dls []*consumer.Delivery) {
	t.Helper()
	for _, dl := range dls {
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
}

// queueEmpty fails unless the queue at url holds no message, visible or
// not.
func queueEmpty(t *testing.T, url string) {
	t.Helper()
	visible, notVisible, delayed := queueCounts(t, rawClient(t), url)
	if visible+notVisible+delayed != 0 {
		t.Fatalf("queue holds %d visible, %d not visible, %d delayed messages, want none", visible, notVisible, delayed)
	}
}

// TestReceiveReady: as a pipelined slot uses it. The first Receive
// fetches one message; ReceiveReady finds nothing and fetches nothing.
// Once ReceiveReady was used, a Receive fetches for the batch behind it
// as well: with 10 messages buffered, the ReceiveReady right after it
// hands out 9 at once. Every job once, intact, attempt 1; acked, the
// queue is empty.
func TestReceiveReady(t *testing.T) {
	d := open(t, testConfig(uniqueName("")), "")
	var jobs []consumer.Job
	for i := range 20 {
		id := fmt.Sprintf("j%02d", i)
		jobs = append(jobs, consumer.Job{ID: id, Name: "App.Job", Payload: []byte("body " + id)})
	}
	publish(t, d, jobs...)
	seen := map[string]bool{}
	check := func(dls []*consumer.Delivery) {
		t.Helper()
		for _, dl := range dls {
			if seen[dl.ID] {
				t.Fatalf("job %s handed out twice", dl.ID)
			}
			seen[dl.ID] = true
			if dl.Attempt != 1 || dl.Driver != DriverName || dl.Pipeline != "orders" || dl.Job != "App.Job" || string(dl.Body) != "body "+dl.ID {
				t.Errorf("delivery %s: attempt %d, driver %q, pipeline %q, job %q, body %q", dl.ID, dl.Attempt, dl.Driver, dl.Pipeline, dl.Job, dl.Body)
			}
		}
	}

	// Round 1: Receive fetched one; ReceiveReady fetches nothing more.
	got := []*consumer.Delivery{receive(t, d, 10*time.Second)}
	if more := d.ReceiveReady(got, 0); len(more) != 1 {
		t.Fatalf("ReceiveReady(max 0) handed out %d", len(more)-1)
	}
	got = d.ReceiveReady(got, 9)
	time.Sleep(300 * time.Millisecond)
	got = d.ReceiveReady(got, 9)
	if len(got) != 1 {
		t.Fatalf("ReceiveReady with nothing buffered and no Receive waiting handed out %d", len(got)-1)
	}
	check(got)
	ackAll(t, got)

	// Rounds 2 and 3: the Receive's poll asks for 1+9; ReceiveReady at
	// once.
	for _, want := range []int{10, 9} {
		got = []*consumer.Delivery{receive(t, d, 10*time.Second)}
		got = d.ReceiveReady(got, 9)
		if len(got) != want {
			t.Fatalf("ReceiveReady right after a Receive with %d buffered handed out %d, want %d", want, len(got)-1, want-1)
		}
		check(got)
		ackAll(t, got)
	}
	if len(seen) != 20 {
		t.Fatalf("saw %d jobs, want 20", len(seen))
	}
	if more := d.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("ReceiveReady after all were acked handed out %s", more[0].ID)
	}
	receiveNone(t, d, 500*time.Millisecond)
	queueEmpty(t, d.QueueURL())
}

// TestReceiveReadyFetchesNothing: a ReceiveReady with nothing buffered
// and no Receive waiting makes no ReceiveMessage call, before and after
// the driver learnt its batch: the queue's messages stay visible for any
// consumer and are not received (their receive count is not spent).
func TestReceiveReadyFetchesNothing(t *testing.T) {
	pc := &pollCounter{}
	d := openWith(t, func(a api) api { pc.api = a; return pc }, testConfig(uniqueName("")), "")
	raw := rawClient(t)
	fetchesNothing := func(what string, want int) {
		t.Helper()
		polls := pc.n.Load()
		for range 5 {
			if more := d.ReceiveReady(nil, 4); len(more) != 0 {
				t.Fatalf("%s: ReceiveReady with nothing buffered handed out %v", what, deliveryIDs(more))
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := pc.n.Load(); n != polls {
			t.Fatalf("%s: %d ReceiveMessage calls after ReceiveReady, want none", what, n-polls)
		}
		visible, notVisible, _ := queueCounts(t, raw, d.QueueURL())
		if visible != want || notVisible != 0 {
			t.Fatalf("%s: %d visible, %d not visible, want %d and 0", what, visible, notVisible, want)
		}
		d.st.mu.Lock()
		b, r := d.st.buffered, d.st.requested
		d.st.mu.Unlock()
		if b != 0 || r != 0 {
			t.Fatalf("%s: %d buffered, %d requested, want none", what, b, r)
		}
	}
	var jobs []consumer.Job
	for i := range 5 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("n%d", i), Name: "App.Job", Payload: []byte("x")})
	}
	publish(t, d, jobs...)
	fetchesNothing("first call", 5)

	// The batch is known now: a Receive fetches 1+4, ReceiveReady takes 4.
	got := []*consumer.Delivery{receive(t, d, 10*time.Second)}
	got = d.ReceiveReady(got, 4)
	if len(got) != 5 {
		t.Fatalf("ReceiveReady right after a Receive handed out %d, want 4", len(got)-1)
	}
	ackAll(t, got)
	publish(t, d, jobs[:3]...)
	fetchesNothing("after a batch", 3)
}

// TestReceiveReadyFIFO: on a FIFO queue ReceiveReady hands out the heads
// of several message groups at once, never two messages of one group
// before the first was settled, each group in publish order; acked, the
// queue is empty.
func TestReceiveReadyFIFO(t *testing.T) {
	d := open(t, testConfig(uniqueName(fifoSuffix)), "")
	var jobs []consumer.Job
	for round := 1; round <= 2; round++ {
		for _, g := range []string{"a", "b", "c", "d", "e"} {
			id := fmt.Sprintf("%s%d", g, round)
			jobs = append(jobs, consumer.Job{ID: id, Name: "App.Job", Key: g, Payload: []byte(id)})
		}
	}
	publish(t, d, jobs...)

	var order []string
	largest := 0
	deadline := time.Now().Add(15 * time.Second)
	for len(order) < len(jobs) {
		// As a pipelined slot: Receive, then the batch behind it.
		batch := []*consumer.Delivery{receive(t, d, 10*time.Second)}
		batch = d.ReceiveReady(batch, 9)
		largest = max(largest, len(batch))
		if time.Now().After(deadline) {
			t.Fatalf("handed out %v of %d jobs in 15s", order, len(jobs))
		}
		groups := map[string]bool{}
		for _, dl := range batch {
			if groups[dl.Key] {
				t.Fatalf("two messages of group %q out at once: %v", dl.Key, deliveryIDs(batch))
			}
			groups[dl.Key] = true
			if string(dl.Body) != dl.ID || dl.Attempt != 1 || dl.Key != dl.ID[:1] {
				t.Errorf("delivery %s: body %q, key %q, attempt %d", dl.ID, dl.Body, dl.Key, dl.Attempt)
			}
			order = append(order, dl.ID)
		}
		ackAll(t, batch)
	}
	if largest < 2 {
		t.Errorf("ReceiveReady never handed out two group heads at once (order %v)", order)
	}
	for _, g := range []string{"a", "b", "c", "d", "e"} {
		i1, i2 := slices.Index(order, g+"1"), slices.Index(order, g+"2")
		if i1 < 0 || i2 < 0 || i1 > i2 {
			t.Errorf("group %s out of order: %v", g, order)
		}
	}
	if len(order) != len(jobs) {
		t.Fatalf("handed out %v, want each of %d jobs once", order, len(jobs))
	}
	if more := d.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("ReceiveReady after all were acked handed out %s", more[0].ID)
	}
	queueEmpty(t, d.QueueURL())
}

func deliveryIDs(dls []*consumer.Delivery) []string {
	out := make([]string, len(dls))
	for i, dl := range dls {
		out[i] = dl.ID
	}
	return out
}

// TestReceiveReadyPausedAndClosed: a paused pipeline calls neither
// Receive nor ReceiveReady, and then nothing more is fetched for it: the
// messages fetched for the batch behind the last Receive wait in the
// buffer (the pipeline paused before its ReceiveReady), go back to the
// queue once half of their visibility timeout has passed (no poll
// follows), and come out again at attempt 1. After Close, ReceiveReady
// hands out nothing.
func TestReceiveReadyPausedAndClosed(t *testing.T) {
	pc := &pollCounter{}
	cfg := testConfig(uniqueName(""))
	cfg.VisibilityTimeout = 2 * time.Second
	d := openWith(t, func(a api) api { pc.api = a; return pc }, cfg, "")
	var jobs []consumer.Job
	for i := range 5 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("p%d", i), Name: "App.Job", Payload: []byte("x")})
	}
	publish(t, d, jobs...)
	if more := d.ReceiveReady(nil, 4); len(more) != 0 {
		t.Fatalf("ReceiveReady with nothing buffered handed out %v", deliveryIDs(more))
	}
	first := receive(t, d, 10*time.Second)
	// Paused from here on: the four fetched for the batch behind that
	// Receive are buffered and nobody comes for them.
	waitBuffered(t, d, 4, 10*time.Second)
	polls := pc.n.Load()
	waitBuffered(t, d, 0, 5*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := pc.n.Load(); n != polls {
		t.Fatalf("%d polls while paused, want none", n-polls)
	}
	visible, notVisible, _ := queueCounts(t, rawClient(t), d.QueueURL())
	if visible != 4 || notVisible != 1 {
		t.Fatalf("paused: %d visible, %d not visible, want the 4 buffered back and the one handed out", visible, notVisible)
	}
	settle(t, first, consumer.Outcome{Action: consumer.Ack})

	// Resumed: the four come out again, at attempt 1.
	got := []*consumer.Delivery{receive(t, d, 10*time.Second)}
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 4 {
		got = d.ReceiveReady(got, 4)
		if time.Now().After(deadline) {
			t.Fatalf("after resume got %v", deliveryIDs(got))
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, dl := range got {
		if dl.Attempt != 1 {
			t.Errorf("job %s back at attempt %d, want 1 (never ran)", dl.ID, dl.Attempt)
		}
	}
	ackAll(t, got)
	queueEmpty(t, d.QueueURL())

	publish(t, d, consumer.Job{ID: "late", Name: "App.Job", Payload: []byte("x")})
	closeDriver(d)
	if more := d.ReceiveReady(nil, 10); len(more) != 0 {
		t.Fatalf("ReceiveReady after Close handed out %v", deliveryIDs(more))
	}
	if n, _, ok := d.st.reserve(); n != 0 || ok {
		t.Fatalf("reserve after Close = %d, %v", n, ok)
	}
}

// TestAutoAckBufferedAtClose: auto-ack messages are deleted on receipt;
// those fetched for the batch behind a Receive and never handed out (Close
// came before the ReceiveReady) are sent again
// at Close, so their jobs are not lost: another consumer gets each once,
// at attempt 1, still auto-ack (nothing left on the queue after).
func TestAutoAckBufferedAtClose(t *testing.T) {
	for _, suffix := range []string{"", fifoSuffix} {
		t.Run("queue"+suffix, func(t *testing.T) {
			cfg := testConfig(uniqueName(suffix))
			d := open(t, cfg, "")
			var jobs []consumer.Job
			for i := range 5 {
				id := fmt.Sprintf("auto%d", i)
				jobs = append(jobs, consumer.Job{ID: id, Name: "App.Job", Key: id, AutoAck: true, Payload: []byte(id),
					Headers: map[string][]string{"x-h": {id}}})
			}
			publish(t, d, jobs...)
			if more := d.ReceiveReady(nil, 4); len(more) != 0 {
				t.Fatalf("ReceiveReady with nothing buffered handed out %v", deliveryIDs(more))
			}
			first := receive(t, d, 10*time.Second)
			waitBuffered(t, d, 4, 10*time.Second)
			if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
				t.Fatalf("Close: %v", err)
			}

			d2 := open(t, cfg, "")
			seen := map[string]bool{first.ID: true}
			for range 4 {
				dl := receive(t, d2, 10*time.Second)
				if seen[dl.ID] {
					t.Fatalf("job %s handed out twice", dl.ID)
				}
				seen[dl.ID] = true
				if dl.Attempt != 1 || string(dl.Body) != dl.ID || dl.Headers["x-h"][0] != dl.ID {
					t.Errorf("job %s sent back: attempt %d, body %q, headers %v", dl.ID, dl.Attempt, dl.Body, dl.Headers)
				}
			}
			receiveNone(t, d2, 500*time.Millisecond)
			queueEmpty(t, d2.QueueURL())
		})
	}
}
