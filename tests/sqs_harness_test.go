//go:build linux

package tests

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Helpers of the SQS scenarios (sqs_test.go): an SQS emulator of the
// test's own (moto's server, or fauxqs where moto is not installed), an
// sqs pipeline config, and a plain aws-sdk-go-v2 client to read queue
// counts and dead-lettered messages. No test ever reaches AWS: the
// credentials are dummies and the endpoint is always the emulator on
// 127.0.0.1. SQSJOBS_EMULATOR=moto|fauxqs forces an emulator and
// SQSJOBS_FAUXQS_DIR names the fauxqs package directory, as in the
// consumer/sqsjobs tests.

// errNoEmulator means neither moto nor fauxqs could be started.
var errNoEmulator = errors.New("no SQS emulator")

// startSQS runs an SQS emulator on a free 127.0.0.1 port until the test
// ends and returns its endpoint URL. In CI a missing emulator fails the
// test; elsewhere it skips it.
func startSQS(t *testing.T) string {
	t.Helper()
	requireTool(t, "php")
	url, err := startEmulator(t)
	if err == nil {
		return url
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("an SQS emulator is required in CI: %v", err)
	}
	t.Skipf("%v (set CI to make this fail)", err)
	return ""
}

// startEmulator picks moto when `import moto.server` works, else fauxqs.
func startEmulator(t *testing.T) (string, error) {
	switch os.Getenv("SQSJOBS_EMULATOR") {
	case "moto":
		return startMotoServer(t)
	case "fauxqs":
		return startFauxqsServer(t)
	}
	if exec.Command("python3", "-c", "import moto.server").Run() == nil {
		return startMotoServer(t)
	}
	url, err := startFauxqsServer(t)
	if err != nil {
		return "", fmt.Errorf("%w: moto is not installed, and fauxqs: %w", errNoEmulator, err)
	}
	return url, nil
}

// sqsPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func sqsPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMotoServer runs `python3 -m moto.server` bound to 127.0.0.1.
func startMotoServer(t *testing.T) (string, error) {
	port, err := sqsPort()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	return runEmulator(t, cmd, port, "/moto-api/")
}

// startFauxqsServer runs fauxqs through its buildApp API, bound to
// 127.0.0.1 (its CLI binds every interface).
func startFauxqsServer(t *testing.T) (string, error) {
	dir := os.Getenv("SQSJOBS_FAUXQS_DIR")
	if dir == "" {
		out, err := exec.Command("npm", "root", "-g").Output()
		if err != nil {
			return "", fmt.Errorf("npm root -g: %w", err)
		}
		dir = filepath.Join(strings.TrimSpace(string(out)), "fauxqs")
	}
	if _, err := os.Stat(filepath.Join(dir, "dist", "app.js")); err != nil {
		return "", fmt.Errorf("fauxqs not found: %w", err)
	}
	port, err := sqsPort()
	if err != nil {
		return "", err
	}
	const script = `const [dir, port] = process.argv.slice(1);
const { buildApp } = await import(dir + "/dist/app.js");
await buildApp({ logger: false }).listen({ port: Number(port), host: "127.0.0.1" });`
	cmd := exec.Command("node", "--input-type=module", "-e", script, dir, strconv.Itoa(port))
	return runEmulator(t, cmd, port, "/health")
}

// runEmulator starts cmd (killed by the kernel if the test binary dies,
// and by the test's cleanup otherwise) and waits until GET probe answers.
func runEmulator(t *testing.T, cmd *exec.Cmd, port int, probe string) (string, error) {
	out := &syncWriter{w: new(strings.Builder)}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// Registered before the supervisor's cleanup, so it runs after it:
	// the emulator outlives the supervisor that talks to it.
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			exited <- err
			return "", fmt.Errorf("%s exited: %v: %s", cmd.Path, err, out.String())
		default:
		}
		if resp, err := hc.Get(url + probe); err == nil {
			resp.Body.Close()
			return url, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return "", fmt.Errorf("%s did not answer on %s within 30s: %s", cmd.Path, url, out.String())
}

// sqsQueueName returns a queue name unique to the test, ending in suffix
// ("" or ".fifo").
func sqsQueueName(t *testing.T, suffix string) string {
	var b strings.Builder
	b.WriteString("pv-e2e-")
	for _, r := range t.Name() {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	b.WriteString("-" + strings.ToLower(rand.Text()[:8]) + suffix)
	return b.String()
}

// sqsOpts describes the sqs pipeline "default" that sqsConfig writes.
type sqsOpts struct {
	endpoint    string
	queue       string
	log         string // E2E_LOG of the workers
	workers     int
	concurrency int
	prefetch    int
	visibility  int // visibility_timeout in seconds; 0 = the queue's
	maxAttempts int
	deadLetter  string // "" = none
	attributes  map[string]string
}

func sqsConfig(t *testing.T, o sqsOpts) string {
	t.Helper()
	var dead, vis string
	if o.deadLetter != "" {
		dead = "      dead_letter: " + o.deadLetter + "\n"
	}
	if o.visibility > 0 {
		vis = fmt.Sprintf("        visibility_timeout: %d\n", o.visibility)
	}
	if len(o.attributes) > 0 {
		vis += "        attributes:\n"
		for _, k := range slices.Sorted(maps.Keys(o.attributes)) {
			// A JSON string is a valid YAML double-quoted scalar.
			v, _ := json.Marshal(o.attributes[k])
			vis += fmt.Sprintf("          %s: %s\n", k, v)
		}
	}
	sections := "sqs:\n  key: test\n  secret: test\n  region: us-east-1\n  endpoint: " + o.endpoint + "\n"
	return e2eConfig(t, behaveWorker, o.log, o.workers, sections, fmt.Sprintf(`      driver: sqs
      concurrency: %d
      retry:
        max_attempts: %d
        backoff: {initial: 100ms, max: 100ms, multiplier: 1, jitter: 0}
%s      config:
        queue: %s
        prefetch: %d
        wait_time_seconds: 1
%s`, o.concurrency, o.maxAttempts, dead, o.queue, o.prefetch, vis))
}

// sqsInspector reads queues of the emulator from the test, with a plain
// aws-sdk-go-v2 client (dummy credentials, the emulator's endpoint).
type sqsInspector struct {
	t  *testing.T
	cl *sqs.Client
}

func newSQSInspector(t *testing.T, endpoint string) *sqsInspector {
	t.Helper()
	cl := sqs.New(sqs.Options{
		Region:       "us-east-1",
		BaseEndpoint: aws.String(endpoint),
		Credentials:  aws.CredentialsProviderFunc(dummyCredentials),
	})
	return &sqsInspector{t: t, cl: cl}
}

func dummyCredentials(context.Context) (aws.Credentials, error) {
	return aws.Credentials{AccessKeyID: "test", SecretAccessKey: "test", Source: "e2e"}, nil
}

func (q *sqsInspector) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// url looks a queue up by name.
func (q *sqsInspector) url(name string) string {
	q.t.Helper()
	ctx, cancel := q.ctx()
	defer cancel()
	out, err := q.cl.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		q.t.Fatalf("GetQueueUrl %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// createQueue creates a standard queue and returns its URL and ARN.
func (q *sqsInspector) createQueue(name string) (url, arn string) {
	q.t.Helper()
	ctx, cancel := q.ctx()
	defer cancel()
	out, err := q.cl.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		q.t.Fatalf("CreateQueue %s: %v", name, err)
	}
	url = aws.ToString(out.QueueUrl)
	attrs, err := q.cl.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn},
	})
	if err != nil {
		q.t.Fatalf("GetQueueAttributes %s: %v", name, err)
	}
	return url, attrs.Attributes[string(types.QueueAttributeNameQueueArn)]
}

// sqsCounts are a queue's ApproximateNumberOfMessages* attributes.
type sqsCounts struct {
	visible, notVisible, delayed int
}

func (c sqsCounts) String() string {
	return fmt.Sprintf("%d visible, %d in flight, %d delayed", c.visible, c.notVisible, c.delayed)
}

// counts returns the message counts of the queue at url.
func (q *sqsInspector) counts(url string) sqsCounts {
	q.t.Helper()
	ctx, cancel := q.ctx()
	defer cancel()
	out, err := q.cl.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		q.t.Fatalf("GetQueueAttributes %s: %v", url, err)
	}
	n := func(k types.QueueAttributeName) int {
		v, err := strconv.Atoi(out.Attributes[string(k)])
		if err != nil {
			q.t.Fatalf("GetQueueAttributes %s: %s = %q", url, k, out.Attributes[string(k)])
		}
		return v
	}
	return sqsCounts{
		visible:    n(types.QueueAttributeNameApproximateNumberOfMessages),
		notVisible: n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		delayed:    n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed),
	}
}

// receiveAll takes every message of the queue at url (with all message
// and system attributes), deleting each, until a receive comes back empty.
func (q *sqsInspector) receiveAll(url string) []types.Message {
	q.t.Helper()
	var msgs []types.Message
	for {
		ctx, cancel := q.ctx()
		out, err := q.cl.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(url),
			MaxNumberOfMessages:         10,
			WaitTimeSeconds:             1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		})
		if err != nil {
			cancel()
			q.t.Fatalf("ReceiveMessage %s: %v", url, err)
		}
		for _, m := range out.Messages {
			if _, err := q.cl.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				cancel()
				q.t.Fatalf("DeleteMessage %s: %v", url, err)
			}
		}
		cancel()
		if len(out.Messages) == 0 {
			return msgs
		}
		msgs = append(msgs, out.Messages...)
	}
}

// attr returns a string message attribute of m ("" when absent).
func attr(m types.Message, name string) string {
	if v, ok := m.MessageAttributes[name]; ok {
		return aws.ToString(v.StringValue)
	}
	return ""
}

// headersAttr decodes the rr_headers attribute of m.
func headersAttr(t *testing.T, m types.Message) map[string][]string {
	t.Helper()
	h := map[string][]string{}
	if v := attr(m, "rr_headers"); v != "" {
		if err := json.Unmarshal([]byte(v), &h); err != nil {
			t.Fatalf("rr_headers %q: %v", v, err)
		}
	}
	return h
}

// stopSQSDrained wants the queue at url empty, stops the supervisor with
// SIGTERM, wants exit code 0 and the queue still empty: no message left
// in it, visible, in flight (a message the supervisor held and did not
// settle) or delayed.
func stopSQSDrained(t *testing.T, s *supervisor, q *sqsInspector, url string) {
	t.Helper()
	if c := q.counts(url); c != (sqsCounts{}) {
		t.Errorf("queue not empty after every job was acked: %s", c)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}
	if c := q.counts(url); c != (sqsCounts{}) {
		t.Errorf("queue not empty after the supervisor stopped: %s", c)
	}
}

// sqsJobs returns the "sjob <id> <attempt> <unix-ms>" lines of behave.php.
func sqsJobs(t *testing.T, log string) []loggedJob {
	t.Helper()
	return loggedJobs(t, log, "sjob", 4)
}
