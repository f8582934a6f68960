package sqsjobs

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// endpoint is the URL of the SQS emulator TestMain started; empty when
// none could be started outside CI (the tests that need it skip).
var endpoint string

// motoErr says why no emulator is running.
var motoErr error

// emulator is "moto" or "fauxqs": the one TestMain started.
var emulator string

func TestMain(m *testing.M) {
	stop, url, err := startEmulator()
	endpoint, motoErr = url, err
	if err != nil && os.Getenv("CI") != "" {
		fmt.Fprintf(os.Stderr, "sqsjobs: an SQS emulator is needed in CI: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if stop != nil {
		stop()
	}
	os.Exit(code)
}

// startEmulator starts moto's SQS server, or fauxqs where moto is not
// installed (as scripts/setup.sh provides them), on a free 127.0.0.1 port.
// SQSJOBS_EMULATOR=moto|fauxqs forces one; SQSJOBS_FAUXQS_DIR names the
// fauxqs package directory (default: `npm root -g`/fauxqs).
func startEmulator() (stop func(), url string, err error) {
	switch os.Getenv("SQSJOBS_EMULATOR") {
	case "moto":
		emulator = "moto"
		return startMoto()
	case "fauxqs":
		emulator = "fauxqs"
		return startFauxqs()
	}
	if exec.Command("python3", "-c", "import moto.server").Run() == nil {
		emulator = "moto"
		return startMoto()
	}
	emulator = "fauxqs"
	stop, url, ferr := startFauxqs()
	if ferr != nil {
		return nil, "", fmt.Errorf("moto is not installed, and fauxqs: %w", ferr)
	}
	return stop, url, nil
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startMoto runs `python3 -m moto.server` on a free 127.0.0.1 port.
func startMoto() (func(), string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command("python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", strconv.Itoa(port))
	return runServer(cmd, port, "/moto-api/")
}

// startFauxqs runs fauxqs bound to 127.0.0.1 (its CLI binds 0.0.0.0, so
// it is started through its buildApp API).
func startFauxqs() (func(), string, error) {
	dir := os.Getenv("SQSJOBS_FAUXQS_DIR")
	if dir == "" {
		out, err := exec.Command("npm", "root", "-g").Output()
		if err != nil {
			return nil, "", fmt.Errorf("npm root -g: %w", err)
		}
		dir = filepath.Join(strings.TrimSpace(string(out)), "fauxqs")
	}
	if _, err := os.Stat(filepath.Join(dir, "dist", "app.js")); err != nil {
		return nil, "", fmt.Errorf("fauxqs not found: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	const script = `const [dir, port] = process.argv.slice(1);
const { buildApp } = await import(dir + "/dist/app.js");
await buildApp({ logger: false }).listen({ port: Number(port), host: "127.0.0.1" });`
	cmd := exec.Command("node", "--input-type=module", "-e", script, dir, strconv.Itoa(port))
	return runServer(cmd, port, "/health")
}

// runServer starts cmd and waits until GET probe answers on port; stop
// kills it and waits for it to exit.
func runServer(cmd *exec.Cmd, port int, probe string) (stop func(), url string, err error) {
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop = func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	url = "http://127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return nil, "", fmt.Errorf("%s exited: %v: %s", cmd.Path, err, out.String())
		default:
		}
		if resp, err := http.Get(url + probe); err == nil {
			resp.Body.Close()
			return stop, url, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return nil, "", fmt.Errorf("%s did not answer on %s within 20s: %s", cmd.Path, url, out.String())
}

// needMoto skips (outside CI) when moto is not running.
func needMoto(t testing.TB) {
	t.Helper()
	if endpoint == "" {
		t.Skipf("no SQS emulator: %v", motoErr)
	}
}

func testGlobal() Global {
	return Global{Key: "test", Secret: "test", Region: "us-east-1", Endpoint: endpoint}
}

// uniqueName returns a fresh queue name with the given suffix (".fifo"
// or "").
func uniqueName(suffix string) string {
	return "q-" + strings.ToLower(rand.Text()[:12]) + suffix
}

func testConfig(queue string) Config {
	return Config{Queue: queue, Prefetch: 10, WaitTimeSeconds: time.Second}
}

func testCtx(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// open starts a driver through New and closes it when the test ends.
func open(t testing.TB, cfg Config, deadLetter string) *Driver {
	t.Helper()
	needMoto(t)
	d, err := New(testCtx(t, 10*time.Second), "orders", testGlobal(), cfg, deadLetter, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { closeDriver(d) })
	return d
}

// openWith starts a driver on a wrapped client.
func openWith(t testing.TB, wrap func(api) api, cfg Config, deadLetter string) *Driver {
	t.Helper()
	needMoto(t)
	ctx := testCtx(t, 10*time.Second)
	c, err := newClient(ctx, testGlobal())
	if err != nil {
		t.Fatal(err)
	}
	cfg.Defaults()
	d, err := newDriver(ctx, "orders", wrap(c), cfg, deadLetter, nil)
	if err != nil {
		t.Fatalf("newDriver: %v", err)
	}
	t.Cleanup(func() { closeDriver(d) })
	return d
}

func closeDriver(d *Driver) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = d.Close(ctx)
}

// rawClient is a plain SQS client on moto for inspecting queues.
func rawClient(t testing.TB) *sqs.Client {
	t.Helper()
	needMoto(t)
	c, err := newClient(testCtx(t, 5*time.Second), testGlobal())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// queueURL looks a queue up.
func queueURL(t testing.TB, c *sqs.Client, name string) string {
	t.Helper()
	out, err := c.GetQueueUrl(testCtx(t, 5*time.Second), &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		t.Fatalf("GetQueueUrl %s: %v", name, err)
	}
	return aws.ToString(out.QueueUrl)
}

// peekIDs receives every visible message of the queue at url without
// hiding it (visibility 0) and returns their rr_id (or message id).
func peekIDs(ctx context.Context, c *sqs.Client, url string) ([]string, error) {
	out, err := c.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, VisibilityTimeout: 0,
		MessageAttributeNames: []string{"All"},
	})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range out.Messages {
		id := aws.ToString(m.MessageId)
		if v, ok := m.MessageAttributes[attrID]; ok {
			id = aws.ToString(v.StringValue)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// queueCounts returns ApproximateNumberOfMessages, ...NotVisible and
// ...Delayed of the queue at url.
func queueCounts(t testing.TB, c *sqs.Client, url string) (visible, notVisible, delayed int) {
	t.Helper()
	out, err := c.GetQueueAttributes(testCtx(t, 5*time.Second), &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameAll},
	})
	if err != nil {
		t.Fatalf("GetQueueAttributes: %v", err)
	}
	n := func(k types.QueueAttributeName) int {
		v, _ := strconv.Atoi(out.Attributes[string(k)])
		return v
	}
	return n(types.QueueAttributeNameApproximateNumberOfMessages),
		n(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible),
		n(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
}

func receive(t testing.TB, d *Driver, wait time.Duration) *consumer.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dl, err := d.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v (waited up to %v)", err, wait)
	}
	return dl
}

// receiveNone fails when d hands anything out within wait.
func receiveNone(t testing.TB, d *Driver, wait time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	dl, err := d.Receive(ctx)
	if err == nil {
		t.Fatalf("Receive handed out %s (attempt %d), want nothing", dl.ID, dl.Attempt)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Receive: %v", err)
	}
}

func settle(t testing.TB, dl *consumer.Delivery, o consumer.Outcome) {
	t.Helper()
	if err := dl.Settle(testCtx(t, 10*time.Second), o); err != nil {
		t.Fatalf("Settle(%s) of %s: %v", o.Action, dl.ID, err)
	}
}

func publish(t testing.TB, d *Driver, jobs ...consumer.Job) {
	t.Helper()
	if err := d.Publish(testCtx(t, 10*time.Second), jobs); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// recorder wraps the SQS client and records, per rr_id, the MessageId and
// ApproximateReceiveCount of every message ReceiveMessage returned.
type recorder struct {
	api
	mu   sync.Mutex
	seen map[string][]received
}

type received struct {
	messageID string
	count     int
	at        time.Time
}

func (r *recorder) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := r.api.ReceiveMessage(ctx, in, opts...)
	if err != nil {
		return out, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.seen == nil {
		r.seen = map[string][]received{}
	}
	for _, m := range out.Messages {
		md := readMessage(m, "", 1)
		n, _ := strconv.Atoi(m.Attributes[sysReceiveCount])
		r.seen[md.id] = append(r.seen[md.id], received{aws.ToString(m.MessageId), n, time.Now()})
	}
	return out, nil
}

func (r *recorder) receipts(id string) []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.seen[id]...)
}
