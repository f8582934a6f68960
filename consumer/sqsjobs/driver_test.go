package sqsjobs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestRetryKeepsMessage: a NACK with redelivery and delay 2s is a
// visibility change: the same SQS message comes back no earlier than 2s
// later, with ApproximateReceiveCount 2 and Attempt 2.
func TestRetryKeepsMessage(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	d := openWith(t, func(a api) api { rec.api = a; return rec }, testConfig(uniqueName("")), "")
	j := consumer.Job{ID: "retry-1", Name: "App\\Job", Payload: []byte("x")}
	publish(t, d, j)
	first := receive(t, d, 10*time.Second)
	start := time.Now()
	settle(t, first, consumer.Outcome{Action: consumer.Retry, Delay: 2 * time.Second})
	second := receive(t, d, 10*time.Second)
	if el := time.Since(start); el < 2*time.Second {
		t.Errorf("redelivered after %v, want >= 2s", el)
	}
	if first.Attempt != 1 || second.Attempt != 2 {
		t.Errorf("attempts %d then %d, want 1 then 2", first.Attempt, second.Attempt)
	}
	got := rec.receipts(j.ID)
	if len(got) != 2 {
		t.Fatalf("job received %d times from SQS, want 2: %+v", len(got), got)
	}
	if got[0].messageID != got[1].messageID {
		t.Errorf("redelivered as a new message %s (was %s): the original was not kept", got[1].messageID, got[0].messageID)
	}
	if got[0].count != 1 || got[1].count != 2 {
		t.Errorf("ApproximateReceiveCount %d then %d, want 1 then 2", got[0].count, got[1].count)
	}
	settle(t, second, consumer.Outcome{Action: consumer.Ack})
	receiveNone(t, d, time.Second)
}

// TestDeadAfterMaxAttempts drives a job that always fails the way the
// pipeline does (Retry while attempts remain, then Dead) and finds it in
// the dead_letter queue with the reason, and nowhere else.
func TestDeadAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	const maxAttempts = 3
	queue, dlq := uniqueName(""), uniqueName("-dlq")
	d := open(t, testConfig(queue), dlq)
	j := consumer.Job{ID: "always-fails", Name: "App\\Job", Payload: []byte("body"), Headers: map[string][]string{"x-tenant": {"acme"}}}
	publish(t, d, j)
	var attempts []int
	for {
		dl := receive(t, d, 10*time.Second)
		attempts = append(attempts, dl.Attempt)
		if dl.Attempt < maxAttempts {
			settle(t, dl, consumer.Outcome{Action: consumer.Retry})
			continue
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Dead, Reason: "max attempts reached"})
		break
	}
	if !slices.Equal(attempts, []int{1, 2, 3}) {
		t.Errorf("attempts %v, want [1 2 3]", attempts)
	}
	receiveNone(t, d, 1500*time.Millisecond)

	raw := rawClient(t)
	out, err := raw.ReceiveMessage(testCtx(t, 5*time.Second), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(queueURL(t, raw, dlq)), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Messages) != 1 {
		t.Fatalf("dead-letter queue holds %d messages, want 1", len(out.Messages))
	}
	md := readMessage(out.Messages[0], dlq, 1)
	if md.id != j.ID || string(md.body) != "body" || !slices.Equal(md.headers["x-tenant"], []string{"acme"}) {
		t.Errorf("dead copy: id %q body %q headers %v", md.id, md.body, md.headers)
	}
	if r := out.Messages[0].MessageAttributes[attrDeadReason]; aws.ToString(r.StringValue) != "max attempts reached" {
		t.Errorf("rr_dead_reason = %q", aws.ToString(r.StringValue))
	}
	if v, nv, dl := queueCounts(t, raw, d.QueueURL()); v+nv+dl != 0 {
		t.Errorf("source queue still holds %d visible, %d in flight, %d delayed", v, nv, dl)
	}
}

// TestRedrivePolicy: without dead_letter, Dead on a queue with a
// RedrivePolicy (maxReceiveCount 2) leaves the message to SQS, which moves
// it to the policy's dead-letter queue.
func TestRedrivePolicy(t *testing.T) {
	t.Parallel()
	raw := rawClient(t)
	dlq := uniqueName("-redrive")
	created, err := raw.CreateQueue(testCtx(t, 5*time.Second), &sqs.CreateQueueInput{QueueName: aws.String(dlq)})
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := raw.GetQueueAttributes(testCtx(t, 5*time.Second), &sqs.GetQueueAttributesInput{
		QueueUrl: created.QueueUrl, AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		t.Fatal(err)
	}
	arn := attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
	cfg := testConfig(uniqueName(""))
	cfg.Attributes = map[string]string{"redrive_policy": fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"2"}`, arn)}
	d := open(t, cfg, "")
	j := consumer.Job{ID: "redrive-me", Name: "App\\Job", Payload: []byte("x")}
	publish(t, d, j)

	var attempts []int
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		dl, err := d.Receive(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		attempts = append(attempts, dl.Attempt)
		if len(attempts) > 5 {
			t.Fatalf("still redelivered after %d Dead outcomes: redrive did not move it", len(attempts))
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Dead, Reason: "poison"})
	}
	if !slices.Equal(attempts, []int{1, 2}) {
		t.Errorf("attempts %v before redrive, want [1 2]", attempts)
	}
	ids, err := peekIDs(testCtx(t, 5*time.Second), raw, aws.ToString(created.QueueUrl))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{j.ID}) {
		t.Errorf("redrive dead-letter queue holds %q, want [%s]", ids, j.ID)
	}
}

// TestHeartbeat: a delivery held for three times its visibility timeout
// is not handed to a second consumer meanwhile, and is gone after Ack.
func TestHeartbeat(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.VisibilityTimeout = 2 * time.Second
	d := open(t, cfg, "")
	other := open(t, cfg, "")
	publish(t, d, consumer.Job{ID: "long-job", Name: "App\\Job", Payload: []byte("x")})
	dl := receive(t, d, 10*time.Second)
	receiveNone(t, other, 3*cfg.VisibilityTimeout)
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	raw := rawClient(t)
	if v, nv, del := queueCounts(t, raw, d.QueueURL()); v+nv+del != 0 {
		t.Errorf("after Ack the queue holds %d visible, %d in flight, %d delayed", v, nv, del)
	}
	receiveNone(t, other, cfg.VisibilityTimeout+500*time.Millisecond)
}

// TestFIFOGroupOrder: 5 groups x 50 jobs, consumed by 5 concurrent
// receivers with prefetch 10, finish in publish order per group, also
// when one job of each group is retried, and only the retried job counts
// a second attempt (the one-at-a-time hand-out per group is checked by
// the conformance case KeyOrder).
func TestFIFOGroupOrder(t *testing.T) {
	t.Parallel()
	const groups, per = 5, 50
	d := open(t, testConfig(uniqueName(fifoSuffix)), "")
	var jobs []consumer.Job
	for i := range per {
		for g := range groups {
			jobs = append(jobs, consumer.Job{
				ID: fmt.Sprintf("g%d-%03d", g, i), Name: "App\\Job", Key: fmt.Sprintf("group-%d", g),
				Payload: []byte(strconv.Itoa(i)),
			})
		}
	}
	// 25 batch calls; moto is slow under load, so allow more than publish's 10s.
	if err := d.Publish(testCtx(t, 40*time.Second), jobs); err != nil {
		t.Fatalf("Publish: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		mu      sync.Mutex
		done    = map[string][]int{}
		retried = map[string]bool{}
		total   int
		errs    []error
		wg      sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		cancel()
	}
	for range 5 {
		wg.Go(func() {
			for ctx.Err() == nil {
				dl, err := d.Receive(ctx)
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				i, _ := strconv.Atoi(string(dl.Body))
				mu.Lock()
				retry := i == 7 && !retried[dl.Key]
				wantAttempt := 1
				if i == 7 && !retry {
					wantAttempt = 2
				}
				if dl.Attempt != wantAttempt {
					// Messages released behind a retried one never ran.
					errs = append(errs, fmt.Errorf("%s: attempt %d, want %d", dl.ID, dl.Attempt, wantAttempt))
				}
				retried[dl.Key] = retried[dl.Key] || retry
				o := consumer.Outcome{Action: consumer.Ack}
				if retry {
					o.Action = consumer.Retry
				} else {
					// Recorded before Settle: the group's next job
					// can only be handed out after it.
					done[dl.Key] = append(done[dl.Key], i)
					total++
				}
				finished := total == groups*per
				// Free the group just before Settle: the next one may
				// be handed out as soon as Settle has run.
				mu.Unlock()
				if err := dl.Settle(ctx, o); err != nil {
					fail(fmt.Errorf("settle %s: %w", dl.ID, err))
					return
				}
				if finished {
					cancel()
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	want := make([]int, per)
	for i := range want {
		want[i] = i
	}
	for g := range groups {
		key := fmt.Sprintf("group-%d", g)
		if !slices.Equal(done[key], want) {
			t.Errorf("%s finished in order %v", key, done[key])
		}
	}
}

// TestFIFORetryReleasesGroup: when a FIFO job is retried, the later
// messages of its group already fetched are made visible again behind it
// and come back in order, without an attempt counted for the receive
// that never ran them.
func TestFIFORetryReleasesGroup(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	var d *Driver
	gate := &firstEmpty{ready: func() bool {
		d.st.mu.Lock()
		defer d.st.mu.Unlock()
		return d.st.waiters == 2
	}}
	d = openWith(t, func(a api) api { rec.api = a; gate.api = rec; return gate }, testConfig(uniqueName(fifoSuffix)), "")
	publish(t, d,
		consumer.Job{ID: "a", Name: "n", Key: "g"},
		consumer.Job{ID: "b", Name: "n", Key: "g"},
		consumer.Job{ID: "c", Name: "n", Key: "g"})
	// Two waiting receivers make the driver ask for two messages (the
	// first poll, started for one of them, answers empty once both
	// wait): SQS answers with a and b of the one group; b waits behind a.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	got := make(chan *consumer.Delivery, 2)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs first: a receiver still waiting returns
	for range 2 {
		wg.Go(func() {
			if dl, err := d.Receive(ctx); err == nil {
				got <- dl
			}
		})
	}
	first := <-got
	if first.ID != "a" || first.Attempt != 1 {
		t.Fatalf("first delivery %s attempt %d, want a attempt 1", first.ID, first.Attempt)
	}
	if emulator == "fauxqs" && len(rec.receipts("b")) == 0 {
		// SQS (and moto) answer with several messages of one group;
		// fauxqs gives one per group, so there is nothing to release.
		t.Skip("fauxqs hands out one message per FIFO group per receive")
	}
	if n := len(rec.receipts("b")); n != 1 {
		t.Fatalf("b fetched %d times before a settled, want 1 (fetched with a)", n)
	}
	settle(t, first, consumer.Outcome{Action: consumer.Retry})
	second := <-got
	if second.ID != "a" || second.Attempt != 2 {
		t.Fatalf("after Retry of a: %s attempt %d, want a attempt 2", second.ID, second.Attempt)
	}
	settle(t, second, consumer.Outcome{Action: consumer.Ack})
	for _, id := range []string{"b", "c"} {
		dl := receive(t, d, 10*time.Second)
		if dl.ID != id || dl.Attempt != 1 {
			t.Fatalf("got %s attempt %d, want %s attempt 1", dl.ID, dl.Attempt, id)
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	if r := rec.receipts("b"); len(r) != 2 || r[1].count != 2 {
		t.Errorf("b's receipts from SQS %+v, want 2 (released once)", r)
	}
}

// firstEmpty answers the first ReceiveMessage with no messages once
// ready() holds (or after 5s), as an empty long poll would.
type firstEmpty struct {
	api
	ready func() bool
	once  sync.Once
}

func (f *firstEmpty) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	first := false
	f.once.Do(func() { first = true })
	if !first {
		return f.api.ReceiveMessage(ctx, in, opts...)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !f.ready() && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	return &sqs.ReceiveMessageOutput{}, nil
}

// failing makes SendMessageBatch refuse the entries whose rr_id is in ids,
// the way SQS reports a partial failure.
type failing struct {
	api
	ids map[string]bool
}

func (f failing) SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error) {
	var keep []types.SendMessageBatchRequestEntry
	var failed []types.BatchResultErrorEntry
	for _, e := range in.Entries {
		if f.ids[aws.ToString(e.MessageAttributes[attrID].StringValue)] {
			failed = append(failed, types.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InternalError"), Message: aws.String("injected")})
			continue
		}
		keep = append(keep, e)
	}
	cp := *in
	cp.Entries = keep
	out, err := f.api.SendMessageBatch(ctx, &cp, opts...)
	if err != nil {
		return nil, err
	}
	out.Failed = append(out.Failed, failed...)
	return out, nil
}

// TestPublishPartialFailure: SQS refusing one job of a batch fails that
// job only; the rest of its batch is published, later batches are not
// sent, and the BatchError says which is which.
func TestPublishPartialFailure(t *testing.T) {
	t.Parallel()
	d := openWith(t, func(a api) api { return failing{a, map[string]bool{"job-3": true}} }, testConfig(uniqueName("")), "")
	var jobs []consumer.Job
	for i := range 25 {
		jobs = append(jobs, consumer.Job{ID: fmt.Sprintf("job-%d", i), Name: "App\\Job", Payload: []byte("x")})
	}
	err := d.Publish(testCtx(t, 10*time.Second), jobs)
	var be *consumer.BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Publish = %v, want a *consumer.BatchError", err)
	}
	var entryErr *BatchEntryError
	if !errors.As(be.Failed[3], &entryErr) || entryErr.Code != "InternalError" {
		t.Errorf("job 3: %v, want the SQS entry error", be.Failed[3])
	}
	for i := 10; i < 25; i++ {
		if !errors.Is(be.Failed[i], ErrNotSent) {
			t.Errorf("job %d: %v, want ErrNotSent", i, be.Failed[i])
		}
	}
	if len(be.Failed) != 16 {
		t.Errorf("%d jobs reported failed, want 16", len(be.Failed))
	}
	var got []string
	for range 9 {
		dl := receive(t, d, 10*time.Second)
		got = append(got, dl.ID)
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	slices.Sort(got)
	want := []string{"job-0", "job-1", "job-2", "job-4", "job-5", "job-6", "job-7", "job-8", "job-9"}
	if !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	receiveNone(t, d, time.Second)
}

// TestPublishRejectsBadDelays: delays SQS cannot express fail the call
// before anything is sent.
func TestPublishRejectsBadDelays(t *testing.T) {
	t.Parallel()
	d := open(t, testConfig(uniqueName("")), "")
	jobs := []consumer.Job{{ID: "a", Name: "n"}, {ID: "b", Name: "n", Delay: 901 * time.Second}}
	var be *consumer.BatchError
	if err := d.Publish(testCtx(t, 5*time.Second), jobs); !errors.As(err, &be) ||
		!errors.Is(be.Failed[1], ErrDelayTooLong) || !errors.Is(be.Failed[0], ErrNotSent) {
		t.Fatalf("Publish with a 901s delay = %v", err)
	}
	fifo := open(t, testConfig(uniqueName(fifoSuffix)), "")
	if err := fifo.Publish(testCtx(t, 5*time.Second), []consumer.Job{{ID: "c", Name: "n", Delay: time.Second}}); !errors.Is(err, ErrFIFODelay) {
		t.Fatalf("Publish with a delay on a FIFO queue = %v, want ErrFIFODelay", err)
	}
	receiveNone(t, d, 500*time.Millisecond)
	receiveNone(t, fifo, 500*time.Millisecond)
}

// TestForeignMessage: a message without rr attributes is a job with the
// message id as id, the queue name as job name and its string attributes
// as headers; a header-changing Requeue keeps id and attempt count.
func TestForeignMessage(t *testing.T) {
	t.Parallel()
	queue := uniqueName("")
	d := open(t, testConfig(queue), "")
	raw := rawClient(t)
	sent, err := raw.SendMessage(testCtx(t, 5*time.Second), &sqs.SendMessageInput{
		QueueUrl: aws.String(d.QueueURL()), MessageBody: aws.String(`{"order":42}`),
		MessageAttributes: map[string]types.MessageAttributeValue{"tenant": stringAttr("acme")},
	})
	if err != nil {
		t.Fatal(err)
	}
	dl := receive(t, d, 10*time.Second)
	id := aws.ToString(sent.MessageId)
	if dl.ID != id || dl.Job != queue || string(dl.Body) != `{"order":42}` || dl.Attempt != 1 {
		t.Fatalf("foreign message as id %q job %q body %q attempt %d; want id %q job %q", dl.ID, dl.Job, dl.Body, dl.Attempt, id, queue)
	}
	if !slices.Equal(dl.Headers["tenant"], []string{"acme"}) {
		t.Errorf("headers %v, want tenant: [acme]", dl.Headers)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Requeue, Headers: map[string][]string{"x-step": {"2"}}})
	again := receive(t, d, 10*time.Second)
	if again.ID != id || again.Attempt != 2 || !slices.Equal(again.Headers["x-step"], []string{"2"}) || !slices.Equal(again.Headers["tenant"], []string{"acme"}) {
		t.Errorf("requeued copy: id %q attempt %d headers %v", again.ID, again.Attempt, again.Headers)
	}
	settle(t, again, consumer.Outcome{Action: consumer.Ack})
	receiveNone(t, d, time.Second)
}

// TestCloseReleasesBuffered: a message fetched for a Receive that gave up
// is made visible again by Close at once (not after its visibility
// timeout).
func TestCloseReleasesBuffered(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.WaitTimeSeconds = 5 * time.Second
	cfg.VisibilityTimeout = 60 * time.Second
	d := open(t, cfg, "")
	raw := rawClient(t)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := d.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty queue = %v", err)
	}
	cancel()
	// The long poll started for that Receive is still waiting.
	publish(t, d, consumer.Job{ID: "late", Name: "App\\Job", Payload: []byte("x")})
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, nv, _ := queueCounts(t, raw, d.QueueURL()); nv == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pending long poll did not pick the message up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := d.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ids, err := peekIDs(testCtx(t, 5*time.Second), raw, d.QueueURL())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"late"}) {
		t.Fatalf("after Close the queue shows %q, want [late]", ids)
	}
}

// TestUnclaimedReturned: a message fetched for a Receive that gave up,
// and not asked for since, becomes visible to other consumers after half
// of its visibility timeout, while the driver stays open.
func TestUnclaimedReturned(t *testing.T) {
	t.Parallel()
	cfg := testConfig(uniqueName(""))
	cfg.WaitTimeSeconds = 5 * time.Second
	cfg.VisibilityTimeout = 8 * time.Second
	d := open(t, cfg, "")
	raw := rawClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	if _, err := d.Receive(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive on an empty queue = %v", err)
	}
	cancel()
	publish(t, d, consumer.Job{ID: "unclaimed", Name: "App\\Job", Payload: []byte("x")})
	fetched := time.Now()
	var sawInFlight bool
	for {
		v, nv, _ := queueCounts(t, raw, d.QueueURL())
		sawInFlight = sawInFlight || nv == 1
		if v == 1 && sawInFlight {
			break
		}
		if time.Since(fetched) > 7*time.Second {
			t.Fatalf("after %v: %d visible, %d in flight (saw in flight: %v); want it back before the 8s visibility timeout",
				time.Since(fetched), v, nv, sawInFlight)
		}
		time.Sleep(50 * time.Millisecond)
	}
	other := open(t, cfg, "")
	dl := receive(t, other, 5*time.Second)
	if dl.ID != "unclaimed" {
		t.Fatalf("other consumer got %q", dl.ID)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
}

// TestStatAndCheck: Stat reports the queue's counters and the deliveries
// in hand; Check is nil while healthy and ErrClosed after Close.
func TestStatAndCheck(t *testing.T) {
	t.Parallel()
	queue := uniqueName("")
	d := open(t, testConfig(queue), "")
	if err := d.Check(); err != nil {
		t.Fatalf("Check = %v", err)
	}
	publish(t, d, consumer.Job{ID: "a", Name: "n"}, consumer.Job{ID: "b", Name: "n"}, consumer.Job{ID: "c", Name: "n", Delay: 30 * time.Second})
	dl := receive(t, d, 10*time.Second)
	st, err := d.Stat(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if st.Queue != d.QueueURL() || !strings.HasSuffix(st.Queue, "/"+queue) || st.Driver != DriverName || st.Pipeline != "orders" || st.Priority != DefaultPriority {
		t.Errorf("Stat identity %+v", st)
	}
	if st.Ready != 1 || st.Reserved != 1 || st.Delayed != 1 || st.Active != 1 || !st.Consuming {
		t.Errorf("Stat ready %d reserved %d delayed %d active %d consuming %v; want 1 1 1 1 true",
			st.Ready, st.Reserved, st.Delayed, st.Active, st.Consuming)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	closeDriver(d)
	if err := d.Check(); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Check after Close = %v, want ErrClosed", err)
	}
	if err := d.Publish(testCtx(t, time.Second), []consumer.Job{{ID: "x"}}); !errors.Is(err, consumer.ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
}

// TestNewErrors: invalid configuration and a missing queue with
// skip_queue_declaration fail New with the matching sentinel.
func TestNewErrors(t *testing.T) {
	t.Parallel()
	needMoto(t)
	ctx := testCtx(t, 10*time.Second)
	if _, err := New(ctx, "p", testGlobal(), Config{Prefetch: 11}, "", nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with prefetch 11 = %v, want ErrInvalidConfig", err)
	}
	cfg := testConfig(uniqueName(""))
	cfg.SkipQueueDeclaration = true
	if _, err := New(ctx, "p", testGlobal(), cfg, "", nil); !errors.Is(err, ErrQueue) {
		t.Errorf("New on a missing queue with skip_queue_declaration = %v, want ErrQueue", err)
	}
}
