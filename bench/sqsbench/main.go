// Command sqsbench measures receive+delete throughput of the supervisor on
// the sqs driver with real PHP echo workers (examples/echo-worker.php),
// next to a plain aws-sdk-go-v2 consumer on the same queue, against an SQS
// emulator: moto's server started on a free 127.0.0.1 port, or the one at
// -endpoint (fauxqs, ElasticMQ, ...). It never talks to AWS: the
// credentials are dummies and the endpoint is always set.
//
// Each round fills the queue with -jobs jobs pushed through the supervisor
// (PushBatch, each SendMessageBatch confirmed) while its pipeline is
// paused, then empties it either by resuming the pipeline (timed from the
// resume until jobs stat counts every job acked) or with the plain consumer
// (one loop of ReceiveMessage of -prefetch messages and one
// DeleteMessageBatch per receive, timed until every message was deleted).
// Rounds alternate plain and supervisor. The plain consumer shows what the
// emulator allows: on moto both are bound by moto (tens to hundreds of
// messages/s), not by the supervisor. bench/sqs.sh builds the supervisor
// and runs it.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
)

// params are the command line.
type params struct {
	bin, endpoint string
	jobs, batch   int
	workers       int
	concurrency   int
	prefetch      int
	rounds        int
	payloadBytes  int
	timeout       time.Duration
}

func main() {
	var p params
	flag.StringVar(&p.bin, "bin", "bin/supervisor", "supervisor binary")
	flag.StringVar(&p.endpoint, "endpoint", os.Getenv("SQS_ENDPOINT"), "SQS emulator URL (default $SQS_ENDPOINT; empty: start moto on 127.0.0.1)")
	flag.IntVar(&p.jobs, "jobs", 300, "jobs per round (moto slows down with the depth of the queue: each receive costs O(messages queued))")
	flag.IntVar(&p.batch, "batch", 500, "jobs per PushBatch when filling the queue")
	flag.IntVar(&p.workers, "workers", 2, "PHP worker processes")
	flag.IntVar(&p.concurrency, "concurrency", 10, "pipeline concurrency")
	flag.IntVar(&p.prefetch, "prefetch", 10, "ReceiveMessage MaxNumberOfMessages of both consumers (1..10)")
	flag.IntVar(&p.rounds, "rounds", 2, "rounds of each consumer (alternating)")
	flag.IntVar(&p.payloadBytes, "payload", 32, "payload size in bytes")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	err := run(ctx, p)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sqsbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, p params) error {
	if p.jobs < 1 || p.batch < 1 || p.workers < 1 || p.concurrency < 1 || p.rounds < 1 || p.prefetch < 1 || p.prefetch > 10 {
		return errors.New("-jobs, -batch, -workers, -concurrency and -rounds must be at least 1, -prefetch 1..10")
	}
	dir, err := os.MkdirTemp("", "sqsbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	emulator := p.endpoint
	if emulator == "" {
		url, stopMoto, err := startMoto(ctx)
		if err != nil {
			return err
		}
		defer stopMoto()
		emulator, p.endpoint = "moto "+url, url
	}
	queue := "pv-bench-" + strings.ToLower(rand.Text()[:8])
	sqsc := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(p.endpoint),
		Credentials: aws.CredentialsProviderFunc(func(context.Context) (aws.Credentials, error) {
			return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "sqsbench"}, nil
		}),
	})

	sv, err := benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: p.bin, Dir: dir, Command: "php examples/echo-worker.php", Ready: benchkit.Consuming,
		Body: fmt.Sprintf(`sqs: {key: test, secret: test, region: us-east-1, endpoint: %q}
jobs:
  pool: {num_workers: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench:
      driver: sqs
      concurrency: %d
      config: {queue: %q, prefetch: %d, wait_time_seconds: 1, visibility_timeout: 30}
`, p.endpoint, p.workers, p.concurrency, queue, p.prefetch),
	})
	if err != nil {
		return err
	}
	defer sv.Stop()
	url, err := queueURL(ctx, sqsc, queue)
	if err != nil {
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = sqsc.DeleteQueue(dctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(url)})
	}()
	res, err := benchkit.Rounds{
		Supervisor: sv, Rounds: p.rounds, Jobs: p.jobs, Batch: p.batch,
		Payload: []byte(strings.Repeat("x", p.payloadBytes)),
		// Each stat costs the emulator a GetQueueAttributes.
		Poll:      250 * time.Millisecond,
		PlainName: "plain aws-sdk-go-v2",
		Pause:     func(ctx context.Context) error { return pause(ctx, sv) },
		Filled:    func(ctx context.Context) error { return waitVisible(ctx, sqsc, url, p.jobs) },
		Plain: func(ctx context.Context) (time.Duration, error) {
			return consumePlain(ctx, sqsc, url, p.prefetch, p.jobs)
		},
		Drained: func(ctx context.Context) error {
			if c, err := counts(ctx, sqsc, url); err != nil || c != 0 {
				return fmt.Errorf("queue %s holds %d messages after the supervisor acked every job (%v)", queue, c, err)
			}
			return nil
		},
	}.Run(ctx)
	if err != nil {
		return err
	}

	total := float64(p.jobs * p.rounds)
	plainRate, svRate := total/res.Plain.Seconds(), total/res.Supervisor.Seconds()
	fmt.Printf("sqs driver on %s, prefetch %d, concurrency %d, %d PHP echo workers, %d rounds of %d jobs of %d bytes\n",
		emulator, p.prefetch, p.concurrency, p.workers, p.rounds, p.jobs, p.payloadBytes)
	fmt.Printf("plain aws-sdk-go-v2 consumer (receive %d, DeleteMessageBatch): %.0f jobs/s  <- the emulator's bound\n", p.prefetch, plainRate)
	fmt.Printf("supervisor + PHP echo workers:                                %.0f jobs/s\n", svRate)
	fmt.Printf("supervisor/plain: %.2f\n", svRate/plainRate)
	fmt.Printf("supervisor CPU while consuming: %.0f µs/job\n", float64(res.CPU.Microseconds())/total)
	return nil
}

// startMoto runs `python3 -m moto.server` on a free 127.0.0.1 port and
// waits until it answers; stop kills it and waits for it to exit.
func startMoto(ctx context.Context) (url string, stop func(), err error) {
	port, err := benchkit.FreePort()
	if err != nil {
		return "", nil, err
	}
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	pr, err := benchkit.StartProc(cmd)
	if err != nil {
		return "", nil, fmt.Errorf("start moto (pip install 'moto[server]', or pass -endpoint): %w", err)
	}
	url = "http://127.0.0.1:" + strconv.Itoa(port)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if resp, err := hc.Get(url + "/moto-api/"); err == nil {
			resp.Body.Close()
			return url, pr.Stop, nil
		}
		select {
		case <-pr.Exited():
			return "", nil, errors.New("moto exited during start (pip install 'moto[server]', or pass -endpoint)")
		case <-ctx.Done():
			pr.Stop()
			return "", nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			pr.Stop()
			return "", nil, errors.New("moto did not answer within 30s")
		}
	}
}

// queueURL looks the queue up (the driver created it at start).
func queueURL(ctx context.Context, c *sqs.Client, queue string) (string, error) {
	out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		return "", fmt.Errorf("GetQueueUrl %s: %w", queue, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// counts returns the messages of the queue: visible, in flight and delayed.
func counts(ctx context.Context, c *sqs.Client, url string) (int, error) {
	out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		return 0, fmt.Errorf("GetQueueAttributes: %w", err)
	}
	n := 0
	for _, v := range out.Attributes {
		i, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("GetQueueAttributes: %q", v)
		}
		n += i
	}
	return n, nil
}

// waitVisible waits until every one of the n messages is visible: a long
// poll of the paused pipeline under way at the pause may hold some until
// the driver makes them visible again.
func waitVisible(ctx context.Context, c *sqs.Client, url string, n int) error {
	for {
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl:       aws.String(url),
			AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameApproximateNumberOfMessages},
		})
		if err != nil {
			return fmt.Errorf("GetQueueAttributes: %w", err)
		}
		v, _ := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameApproximateNumberOfMessages)])
		if v == n {
			return nil
		}
		if v > n {
			return fmt.Errorf("queue holds %d visible messages after a fill of %d", v, n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d messages visible after the fill", benchkit.ErrTimeout, v, n)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// consumePlain receives n messages, prefetch per ReceiveMessage, deleting
// each answer with one DeleteMessageBatch, and returns the time until the
// last delete was confirmed.
func consumePlain(ctx context.Context, c *sqs.Client, url string, prefetch, n int) (time.Duration, error) {
	start := time.Now()
	for left := n; left > 0; {
		out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: int32(prefetch), WaitTimeSeconds: 1,
			MessageAttributeNames: []string{"All"}, VisibilityTimeout: 30,
		})
		if err != nil {
			if ctx.Err() != nil {
				return 0, fmt.Errorf("%w in the plain round, %d left", benchkit.ErrTimeout, left)
			}
			return 0, fmt.Errorf("ReceiveMessage: %w", err)
		}
		if len(out.Messages) == 0 {
			continue
		}
		in := &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url)}
		for i, m := range out.Messages {
			in.Entries = append(in.Entries, types.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
		del, err := c.DeleteMessageBatch(ctx, in)
		if err != nil {
			return 0, fmt.Errorf("DeleteMessageBatch: %w", err)
		}
		if len(del.Failed) > 0 {
			return 0, fmt.Errorf("DeleteMessageBatch: %d failed: %s", len(del.Failed), aws.ToString(del.Failed[0].Message))
		}
		left -= len(out.Messages)
	}
	return time.Since(start), nil
}

// pause pauses the pipeline and waits out a long poll that may be under
// way (wait_time_seconds 1), so the next fill stays in the queue.
func pause(ctx context.Context, sv *benchkit.Supervisor) error {
	if err := sv.Client.Pause(ctx, "bench"); err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(1500 * time.Millisecond):
		return nil
	}
}
