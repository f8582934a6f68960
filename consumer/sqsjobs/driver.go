// Package sqsjobs is the sqs driver: it publishes jobs as SQS messages and
// consumes them with long-polled ReceiveMessage calls through
// aws-sdk-go-v2.
//
// What it promises, beyond RoadRunner's sqs driver:
//
//   - The original message is kept wherever SQS allows it, so that
//     ApproximateReceiveCount (the delivery's Attempt) and the queue's
//     redrive policy keep working: Retry(d) and a Requeue that changes no
//     header are ChangeMessageVisibility(d); Release is
//     ChangeMessageVisibility(0). Only a Requeue that changes headers sends
//     a copy (message attributes are immutable) and then deletes the
//     original; the copy carries rr_attempts so the attempt count goes on.
//   - Attempt is ApproximateReceiveCount (plus the attempts spent before a
//     requeued copy was sent), minus the receives this driver knows ran no
//     job: Release outcomes, FIFO messages released behind a retried one,
//     and buffered messages nobody came for. SQS still counts those
//     receives against a redrive policy's maxReceiveCount.
//   - Ack is DeleteMessage, batched with DeleteMessageBatch by one owned
//     goroutine (flushes within a few milliseconds); Settle returns only
//     after SQS confirmed the delete.
//   - Dead sends a copy to the dead_letter queue and then deletes the
//     original; without dead_letter, retain_failed_jobs leaves the
//     message in the queue (visible again after error_visibility_timeout)
//     for its redrive policy, and a queue with a RedrivePolicy gets
//     ChangeMessageVisibility(0) so that SQS's redrive moves the message
//     once its receive count passes maxReceiveCount; otherwise the
//     message is deleted (the pipeline logs it).
//   - Heartbeat: one owned goroutine extends the visibility of every
//     delivery handed out and not settled once half of its visibility
//     timeout has passed, so a long job is never delivered twice; a
//     message that waited that long in the buffer unclaimed (the pipeline
//     paused) is made visible again for other consumers.
//   - Flow control: ReceiveMessage asks only for what callers asked of
//     the driver: one message per Receive call waiting; with pipelining,
//     once ReceiveReady was called with max m, m more per waiting Receive
//     (the batch its caller takes right after). Nothing is fetched ahead
//     while no Receive waits (a ReceiveReady that finds nothing ready
//     fetches nothing): messages nobody takes would be received twice,
//     counted against a redrive policy's maxReceiveCount. Never more than
//     prefetch messages are received and not handed out.
//   - FIFO queues (".fifo"): MessageGroupId is the job's key, else
//     message_group_id, else DefaultGroupID; MessageDeduplicationId is the
//     job id (a requeued copy gets a fresh one). A group's next message is
//     handed out only after the previous one was settled; when one is
//     retried or released, the group's later messages already received
//     are made visible again behind it, so the group keeps its order.
//     While it holds messages of a FIFO queue the driver short-polls (a
//     long poll could sit on groups it locks itself). FIFO queues take no
//     per-message delay: Publish rejects a delayed job, and a
//     header-changing Requeue sends its copy without delay (at the
//     group's tail).
//
// Message layout written by Publish: the body is the payload, or its
// base64 when it holds bytes SQS refuses (rr_encoding: base64), or "-"
// for an empty payload (rr_encoding: empty; SQS refuses empty bodies); string
// attributes rr_id, rr_job, rr_pipeline, rr_headers (JSON object of
// string lists), rr_priority, rr_auto_ack. Messages of other producers
// (no rr_id) get the message id as job id, the queue name as job name and
// their string attributes as headers.
package sqsjobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// DriverName is the value of consumer.Delivery.Driver and Stat.Driver.
const DriverName = "sqs"

// Sentinel errors of the sqs driver.
var (
	// ErrInvalidConfig wraps Config or Global validation errors from New.
	ErrInvalidConfig = errors.New("sqsjobs: invalid configuration")
	// ErrQueue wraps a failed queue declaration or lookup in New.
	ErrQueue = errors.New("sqsjobs: queue unavailable")
	// ErrDelayTooLong is returned for a delay SQS cannot express (over
	// 900s for a message, over 12h for a visibility timeout).
	ErrDelayTooLong = errors.New("sqsjobs: delay too long")
	// ErrFIFODelay is returned by Publish for a delayed job on a FIFO
	// queue (SQS takes no per-message delay there).
	ErrFIFODelay = errors.New("sqsjobs: FIFO queues take no per-message delay")
	// ErrNotSent marks jobs of a batch that were not sent because an
	// earlier part of the batch failed.
	ErrNotSent = errors.New("sqsjobs: not sent after an earlier failure")
)

// api is the part of *sqs.Client the driver uses (tests wrap it to inject
// failures).
type api interface {
	CreateQueue(context.Context, *sqs.CreateQueueInput, ...func(*sqs.Options)) (*sqs.CreateQueueOutput, error)
	GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
	ReceiveMessage(context.Context, *sqs.ReceiveMessageInput, ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessage(context.Context, *sqs.SendMessageInput, ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	SendMessageBatch(context.Context, *sqs.SendMessageBatchInput, ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
	DeleteMessage(context.Context, *sqs.DeleteMessageInput, ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	DeleteMessageBatch(context.Context, *sqs.DeleteMessageBatchInput, ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(context.Context, *sqs.ChangeMessageVisibilityInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(context.Context, *sqs.ChangeMessageVisibilityBatchInput, ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
}

// Driver is one sqs pipeline. It implements consumer.Consumer,
// consumer.Publisher, consumer.Stater, consumer.Checker and
// consumer.ReadyReceiver. All methods are safe for concurrent use.
type Driver struct {
	name      string
	cfg       Config
	log       *slog.Logger
	client    api
	queueURL  string
	queueName string
	fifo      bool
	deadURL   string        // dead_letter queue URL, "" when none
	deadFIFO  bool          // the dead_letter queue is a FIFO queue
	redrive   bool          // the queue has a RedrivePolicy
	vis       time.Duration // visibility timeout of received messages
	// queueDelay is the queue's DelaySeconds, read at New.
	queueDelay time.Duration

	pollCtx    context.Context // cancelled when Close begins
	stopPoll   context.CancelFunc
	bgCtx      context.Context // cancelled when Close ends
	stopBg     context.CancelFunc
	pollWG     sync.WaitGroup // the poller
	bgWG       sync.WaitGroup // the heartbeat
	delWG      sync.WaitGroup // the deleter
	deletes    chan deleteReq
	deleterEnd chan struct{} // closed to stop the deleter

	st  state
	dlq deadState // the dead_letter queue's scans (deadstore.go)
	due dueMemo   // due dates of messages made visible again

	closeOnce sync.Once
	closeErr  error
}

var (
	_ consumer.Consumer  = (*Driver)(nil)
	_ consumer.Publisher = (*Driver)(nil)
	_ consumer.Stater    = (*Driver)(nil)
	_ consumer.Checker   = (*Driver)(nil)
)

// New returns the driver of pipeline name on the queue of cfg. It
// validates g and cfg (after applying their defaults to copies), creates
// the queue with cfg.Attributes and cfg.Tags unless
// cfg.SkipQueueDeclaration (then it only looks the queue up), resolves the
// dead-letter queue deadLetter (a queue name or URL; empty for none;
// created like the queue), reads the queue's VisibilityTimeout and
// RedrivePolicy, and starts the poller, the heartbeat and the deleter.
// log may be nil. ctx bounds only the setup.
func New(ctx context.Context, name string, g Global, cfg Config, deadLetter string, log *slog.Logger) (*Driver, error) {
	g.Defaults()
	cfg.Defaults()
	if err := errors.Join(g.Validate(), cfg.Validate()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	client, err := newClient(ctx, g)
	if err != nil {
		return nil, err
	}
	return newDriver(ctx, name, client, cfg, deadLetter, log)
}

// newClient builds the SQS client for g.
func newClient(ctx context.Context, g Global) (*sqs.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if g.Region != "" {
		opts = append(opts, awsconfig.WithRegion(g.Region))
	}
	if g.Key != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(g.Key, g.Secret, g.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("sqsjobs: aws config: %w", err)
	}
	return sqs.NewFromConfig(awsCfg, func(o *sqs.Options) {
		if g.Endpoint != "" {
			o.BaseEndpoint = aws.String(g.Endpoint)
		}
	}), nil
}

// newDriver is New after validation, on a given client. cfg must have its
// defaults applied.
func newDriver(ctx context.Context, name string, client api, cfg Config, deadLetter string, log *slog.Logger) (*Driver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Driver{
		name:       name,
		cfg:        cfg,
		log:        log.With("pipeline", name, "driver", DriverName),
		client:     client,
		fifo:       cfg.FIFO(),
		deletes:    make(chan deleteReq),
		deleterEnd: make(chan struct{}),
	}
	var err error
	d.queueURL, d.queueName, err = d.declare(ctx, cfg.Queue, cfg.Attributes, cfg.Tags)
	if err != nil {
		return nil, err
	}
	if deadLetter != "" {
		d.deadURL, _, err = d.declare(ctx, deadLetter, nil, nil)
		if err != nil {
			return nil, err
		}
		d.deadFIFO = strings.HasSuffix(deadLetter, fifoSuffix)
	}
	attrs, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameVisibilityTimeout, types.QueueAttributeNameRedrivePolicy,
			types.QueueAttributeNameDelaySeconds,
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: attributes: %w", ErrQueue, d.queueName, err)
	}
	d.redrive = hasRedrive(attrs.Attributes[string(types.QueueAttributeNameRedrivePolicy)])
	d.vis = cfg.VisibilityTimeout
	if d.vis == 0 {
		n, err := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameVisibilityTimeout)])
		if err != nil || n <= 0 {
			n = 30 // SQS's default
		}
		d.vis = time.Duration(n) * time.Second
	}
	if n, err := strconv.Atoi(attrs.Attributes[string(types.QueueAttributeNameDelaySeconds)]); err == nil && n > 0 {
		d.queueDelay = time.Duration(n) * time.Second
	}
	d.st.init(cfg.Prefetch, d.fifo)

	d.pollCtx, d.stopPoll = context.WithCancel(context.WithoutCancel(ctx))
	d.bgCtx, d.stopBg = context.WithCancel(context.WithoutCancel(ctx))
	d.pollWG.Go(d.pollLoop)
	d.bgWG.Go(d.heartbeatLoop)
	d.delWG.Go(d.deleteLoop)
	return d, nil
}

// hasRedrive reports whether a RedrivePolicy attribute names a target.
func hasRedrive(policy string) bool {
	if policy == "" {
		return false
	}
	var p struct {
		Target string `json:"deadLetterTargetArn"`
	}
	return json.Unmarshal([]byte(policy), &p) == nil && p.Target != ""
}

// declare returns the URL and name of queue (a name or a URL): created
// with attrs and tags unless skip_queue_declaration, else looked up.
func (d *Driver) declare(ctx context.Context, queue string, attrs, tags map[string]string) (string, string, error) {
	if strings.HasPrefix(queue, "http://") || strings.HasPrefix(queue, "https://") {
		u, err := url.Parse(queue)
		if err != nil {
			return "", "", fmt.Errorf("%w: %s: %w", ErrQueue, queue, err)
		}
		return queue, path.Base(u.Path), nil
	}
	if !d.cfg.SkipQueueDeclaration {
		in := &sqs.CreateQueueInput{QueueName: aws.String(queue), Attributes: map[string]string{}, Tags: tags}
		for k, v := range attrs {
			name, _ := attributeName(k) // Validate rejected unknown names
			in.Attributes[name] = v
		}
		if strings.HasSuffix(queue, fifoSuffix) {
			in.Attributes[string(types.QueueAttributeNameFifoQueue)] = "true"
		}
		out, err := d.client.CreateQueue(ctx, in)
		if err == nil {
			return aws.ToString(out.QueueUrl), queue, nil
		}
		var exists *types.QueueNameExists
		if !errors.As(err, &exists) {
			return "", "", fmt.Errorf("%w: create %s: %w", ErrQueue, queue, err)
		}
		d.log.Warn("queue exists with other attributes; using it as it is", "queue", queue)
	}
	out, err := d.client.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(queue)})
	if err != nil {
		return "", "", fmt.Errorf("%w: look up %s: %w", ErrQueue, queue, err)
	}
	return aws.ToString(out.QueueUrl), queue, nil
}

// QueueURL returns the URL of the pipeline's queue.
func (d *Driver) QueueURL() string { return d.queueURL }

// Close stops receiving, makes the messages received but not handed out
// visible again (auto-ack ones, deleted on receipt, are sent again: see
// sendBack), waits until every handed-out delivery is settled or ctx
// is done, then stops the heartbeat and the deleter. A long poll under
// way is abandoned: a message SQS hands to it anyway stays invisible
// until its visibility timeout passes (nothing is lost). Deliveries still unsettled when ctx ends become visible
// again when their visibility timeout passes, and Close returns an error
// saying how many. Close is idempotent; later calls return the first
// result. After Close, Receive, Publish and Settle return
// consumer.ErrClosed.
func (d *Driver) Close(ctx context.Context) error {
	d.closeOnce.Do(func() { d.closeErr = d.close(ctx) })
	return d.closeErr
}

func (d *Driver) close(ctx context.Context) error {
	d.st.beginClose()
	d.stopPoll()
	d.pollWG.Wait()
	buffered, autoAck := d.st.takeBuffered()
	releaseErr := errors.Join(d.changeVisibility(ctx, buffered, 0), d.sendBack(ctx, autoAck))
	waitErr := d.st.waitIdle(ctx)
	d.st.finishClose()
	close(d.deleterEnd)
	// A delete under way finishes unless Close's ctx ends first.
	stop := context.AfterFunc(ctx, d.stopBg)
	d.delWG.Wait()
	stop()
	d.stopBg()
	d.bgWG.Wait()
	if err := errors.Join(releaseErr, waitErr); err != nil {
		return fmt.Errorf("sqsjobs: close %s: %w", d.name, err)
	}
	return nil
}

// Check reports whether the driver is usable: nil when healthy,
// consumer.ErrClosed after Close, and the last ReceiveMessage error while
// receiving fails.
func (d *Driver) Check() error {
	return d.st.health()
}
