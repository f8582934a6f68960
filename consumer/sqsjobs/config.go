package sqsjobs

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// Default values and limits applied by Config.Defaults and Config.Validate.
const (
	// DefaultQueue is the queue name when none is configured.
	DefaultQueue = "default"
	// DefaultPriority is the pipeline priority when none is configured.
	DefaultPriority int64 = 10
	// DefaultPrefetch is ReceiveMessage's MaxNumberOfMessages cap.
	DefaultPrefetch = 1
	// MaxPrefetch is SQS's limit for MaxNumberOfMessages.
	MaxPrefetch = 10
	// DefaultWaitTime is the long-poll wait when none is configured.
	DefaultWaitTime = 20 * time.Second
	// MaxWaitTime is SQS's limit for WaitTimeSeconds.
	MaxWaitTime = 20 * time.Second
	// MaxVisibility is SQS's limit for a visibility timeout (12 hours).
	MaxVisibility = 43200 * time.Second
	// MaxDelay is SQS's limit for DelaySeconds (15 minutes).
	MaxDelay = 900 * time.Second
	// DefaultGroupID is the FIFO MessageGroupId of jobs that have no key
	// when message_group_id is not configured.
	DefaultGroupID = "default"
	// fifoSuffix marks a FIFO queue name.
	fifoSuffix = ".fifo"
)

// Config holds the pipeline keys of an sqs pipeline
// (jobs.pipelines.<name>.config). Key names follow RoadRunner's sqs
// driver. Durations accept whole seconds as integers (as in RoadRunner) or
// strings like "30s"; SQS counts in whole seconds, so fractions are
// rejected.
type Config struct {
	// Queue is the queue name, or a full queue URL. A name ending in
	// ".fifo" is a FIFO queue.
	Queue string `yaml:"queue"`
	// Prefetch caps ReceiveMessage's MaxNumberOfMessages (1..10) and the
	// messages received but not yet handed out. The driver asks only for
	// the Receive calls waiting and, with jobs.pool.pipelining N > 1, the
	// N-1 jobs each such caller takes right after with ReceiveReady;
	// nothing is fetched ahead while no Receive waits. A pipelined batch
	// holds at most prefetch jobs: a prefetch below N makes batches
	// smaller, and the default 1 makes next to none.
	Prefetch int `yaml:"prefetch"`
	// VisibilityTimeout is passed to ReceiveMessage; 0 uses the queue's
	// own VisibilityTimeout attribute. While a job runs the driver keeps
	// extending it (heartbeat), so it need not exceed the longest job.
	VisibilityTimeout time.Duration `yaml:"visibility_timeout"`
	// WaitTimeSeconds is the long-poll wait of ReceiveMessage (1s..20s).
	// 0, RoadRunner's default (short polling), means DefaultWaitTime:
	// the driver always long-polls.
	WaitTimeSeconds time.Duration `yaml:"wait_time_seconds"`
	// ErrorVisibilityTimeout, when positive, is how long a message stays
	// invisible after a Retry outcome without a delay (RoadRunner applies
	// it to failed jobs). 0 makes such a message visible again at once.
	ErrorVisibilityTimeout time.Duration `yaml:"error_visibility_timeout"`
	// MessageGroupID is the FIFO MessageGroupId of jobs without a key
	// (default DefaultGroupID). Only meaningful for FIFO queues.
	MessageGroupID string `yaml:"message_group_id"`
	// SkipQueueDeclaration makes New only look the queue (and the
	// dead-letter queue) up instead of creating it.
	SkipQueueDeclaration bool `yaml:"skip_queue_declaration"`
	// Attributes are queue attributes used when the driver creates the
	// queue. Keys are AWS attribute names, matched case-insensitively
	// ("visibilitytimeout" is VisibilityTimeout).
	Attributes map[string]string `yaml:"attributes"`
	// Tags are queue tags used when the driver creates the queue.
	Tags map[string]string `yaml:"tags"`
	// Priority is the pipeline priority; jobs without rr_priority get it.
	// Lower numbers are more urgent.
	Priority int64 `yaml:"priority"`
	// RetainFailedJobs leaves a Dead job in the queue instead of deleting
	// it (RoadRunner's key): the message becomes visible again after
	// error_visibility_timeout (0: at once) and the queue's redrive policy
	// decides its fate. A pipeline dead_letter queue takes precedence.
	RetainFailedJobs bool `yaml:"retain_failed_jobs"`
	// MaxMessagesInFlight is RoadRunner's cap on messages received and
	// not yet settled. The config package turns it into the pipeline's
	// concurrency when that is not written; the driver does not read it.
	MaxMessagesInFlight int `yaml:"max_messages_in_flight"`
}

// Defaults fills in zero fields with their default values.
func (c *Config) Defaults() {
	if c.Queue == "" {
		c.Queue = DefaultQueue
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.WaitTimeSeconds == 0 {
		c.WaitTimeSeconds = DefaultWaitTime
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
}

// Clamp brings out-of-range values into range as RoadRunner does and
// returns one *consumer.FieldError per change, for warnings: prefetch
// below 1 becomes 1 and above MaxPrefetch becomes MaxPrefetch;
// wait_time_seconds, visibility_timeout and error_visibility_timeout
// above SQS's limits become the limit. Call it after decoding, before
// Validate.
func (c *Config) Clamp() []*consumer.FieldError {
	var out []*consumer.FieldError
	warn := func(key, format string, args ...any) {
		out = append(out, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	switch {
	case c.Prefetch < 1:
		warn("prefetch", "%d is below 1: using 1", c.Prefetch)
		c.Prefetch = 1
	case c.Prefetch > MaxPrefetch:
		warn("prefetch", "%d is above SQS's limit: using %d (one ReceiveMessage returns at most %d)", c.Prefetch, MaxPrefetch, MaxPrefetch)
		c.Prefetch = MaxPrefetch
	}
	for _, f := range []struct {
		key string
		d   *time.Duration
		max time.Duration
	}{
		{"wait_time_seconds", &c.WaitTimeSeconds, MaxWaitTime},
		{"visibility_timeout", &c.VisibilityTimeout, MaxVisibility},
		{"error_visibility_timeout", &c.ErrorVisibilityTimeout, MaxVisibility},
	} {
		if *f.d > f.max {
			warn(f.key, "%s is above SQS's limit: using %s", *f.d, f.max)
			*f.d = f.max
		}
	}
	if c.MaxMessagesInFlight < 0 {
		warn("max_messages_in_flight", "%d is below 0: ignored", c.MaxMessagesInFlight)
		c.MaxMessagesInFlight = 0
	}
	return out
}

// FIFO reports whether the configured queue is a FIFO queue.
func (c *Config) FIFO() bool { return strings.HasSuffix(c.Queue, fifoSuffix) }

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; it returns nil when the config is usable. Call Defaults
// first: zero values are reported as invalid.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if strings.TrimSpace(c.Queue) == "" {
		add("queue", "must not be empty")
	}
	if c.Prefetch < 1 || c.Prefetch > MaxPrefetch {
		add("prefetch", "must be between 1 and %d, got %d", MaxPrefetch, c.Prefetch)
	}
	seconds := func(key string, d, lo, hi time.Duration) {
		switch {
		case d < lo || d > hi:
			add(key, "must be between %s and %s, got %s", lo, hi, d)
		case d%time.Second != 0:
			add(key, "must be whole seconds (SQS counts in seconds), got %s", d)
		}
	}
	seconds("visibility_timeout", c.VisibilityTimeout, 0, MaxVisibility)
	seconds("wait_time_seconds", c.WaitTimeSeconds, 0, MaxWaitTime)
	seconds("error_visibility_timeout", c.ErrorVisibilityTimeout, 0, MaxVisibility)
	if c.MessageGroupID != "" && !c.FIFO() {
		add("message_group_id", "only applies to FIFO queues (a queue name ending in %s)", fifoSuffix)
	}
	if c.Priority <= 0 {
		add("priority", "must be positive, got %d", c.Priority)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Attributes)) {
		if _, ok := attributeName(k); !ok {
			add("attributes."+k, "unknown SQS queue attribute (one of %s)", strings.Join(settableAttributes(), ", "))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(c.Tags)) {
		if strings.TrimSpace(k) == "" {
			add("tags", "a tag key must not be empty")
		}
	}
	return errors.Join(errs...)
}

// settableAttributes are the queue attributes CreateQueue accepts.
func settableAttributes() []string {
	var out []string
	for _, a := range types.QueueAttributeName("").Values() {
		switch a {
		case types.QueueAttributeNameAll,
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
			types.QueueAttributeNameCreatedTimestamp,
			types.QueueAttributeNameLastModifiedTimestamp,
			types.QueueAttributeNameQueueArn:
			continue
		}
		out = append(out, string(a))
	}
	slices.Sort(out)
	return out
}

// attributeName maps a configured attribute key to its AWS spelling,
// case-insensitively and ignoring underscores ("visibility_timeout" and
// "VisibilityTimeout" are the same attribute).
func attributeName(key string) (string, bool) {
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	k := norm(key)
	for _, a := range settableAttributes() {
		if norm(a) == k {
			return a, true
		}
	}
	return "", false
}

// Global is the top-level sqs: section shared by every sqs pipeline. All
// fields are optional: without Key and Secret the SDK's default credential
// chain (environment, shared config, instance role) is used, and without
// Region the SDK's default region.
type Global struct {
	// Key is the AWS access key id.
	Key string `yaml:"key"`
	// Secret is the AWS secret access key.
	Secret string `yaml:"secret"`
	// Region is the AWS region, for example us-east-1.
	Region string `yaml:"region"`
	// SessionToken is the session token of temporary credentials.
	SessionToken string `yaml:"session_token"`
	// Endpoint overrides the SQS endpoint URL (ElasticMQ, LocalStack,
	// moto).
	Endpoint string `yaml:"endpoint"`
}

// Defaults fills in zero fields with their default values (none: empty
// means the SDK default).
func (g *Global) Defaults() {}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; nil means usable.
func (g *Global) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if (g.Key == "") != (g.Secret == "") {
		add("key", "key and secret must be set together")
	}
	if g.SessionToken != "" && g.Key == "" {
		add("session_token", "needs key and secret")
	}
	if g.Endpoint != "" && !strings.HasPrefix(g.Endpoint, "http://") && !strings.HasPrefix(g.Endpoint, "https://") {
		add("endpoint", "must be an http:// or https:// URL, got %q", g.Endpoint)
	}
	return errors.Join(errs...)
}
