package amqpjobs

import (
	"context"
	"crypto/rand"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// rabbitmqctl runs rabbitmqctl with args, failing the test on error.
func rabbitmqctl(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// testVhost creates a vhost for guest, deleted when the test ends, and
// returns the broker address that uses it. Closing every connection of
// that vhost then leaves other tests on the broker alone.
func testVhost(t *testing.T) string {
	t.Helper()
	needBroker(t)
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("rabbitmqctl not found: %v", err)
		}
		t.Skipf("rabbitmqctl not found: %v", err)
	}
	vhost := "pv-test-" + strings.ToLower(rand.Text()[:8])
	rabbitmqctl(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbitmqctl(t, "delete_vhost", vhost) })
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	u, err := url.Parse(brokerAddr())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	return u.String()
}

// TestRedial: the broker closes every connection while 1000 jobs are being
// consumed; the driver redials, and in the end every job was acked exactly
// once and the queue is empty.
func TestRedial(t *testing.T) {
	t.Parallel()
	addr := testVhost(t)
	vhost := strings.TrimPrefix(mustURL(t, addr).Path, "/")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cfg := Config{Queue: "redial", Prefetch: 20, RedialTimeout: 5 * time.Second}
	d, err := New(ctx, "redial", Global{Addr: addr}, cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = d.Close(cctx)
	}()
	const total = 1000
	publish(t, d, numbered("redial", total)...)

	var (
		mu     sync.Mutex
		acked  = map[string]int{}
		stale  atomic.Int64
		wg     sync.WaitGroup
		errs   = make(chan error, 8)
		closed = make(chan struct{})
	)
	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	for range 4 {
		wg.Go(func() {
			for {
				del, err := d.Receive(workCtx)
				if err != nil {
					if workCtx.Err() == nil {
						errs <- err
					}
					return
				}
				time.Sleep(5 * time.Millisecond) // the "work": 1000 jobs take over a second
				err = del.Settle(workCtx, consumer.Outcome{Action: consumer.Ack})
				switch {
				case errors.Is(err, consumer.ErrStaleDelivery):
					stale.Add(1)
					continue // the broker redelivers it
				case err != nil:
					errs <- err
					return
				}
				mu.Lock()
				acked[del.ID]++
				n := len(acked)
				mu.Unlock()
				if n == total {
					stopWork()
				}
			}
		})
	}
	// Close every connection of the vhost once a tenth is done
	// (rabbitmqctl itself takes most of a second to start).
	wg.Go(func() {
		defer close(closed)
		for {
			mu.Lock()
			n := len(acked)
			mu.Unlock()
			if n >= total/10 {
				break
			}
			select {
			case <-workCtx.Done():
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
		rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "test")
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	<-closed
	if ctx.Err() != nil {
		t.Fatalf("not done in time: %d of %d acked", len(acked), total)
	}
	for _, j := range numbered("redial", total) {
		if n := acked[j.ID]; n != 1 {
			t.Errorf("job %s acked %d times, want 1", j.ID, n)
		}
	}
	waitFor(t, 10*time.Second, "the driver to be connected", func() bool { return d.Check() == nil })
	if s := d.current(); s == nil || s.gen < 2 {
		t.Errorf("the driver did not reconnect (session %+v)", s)
	}
	st, err := d.Stat(ctx)
	if err != nil || st.Ready != 0 {
		t.Errorf("after all acks: Stat = %+v, %v; want an empty queue", st, err)
	}
	quiet, qcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer qcancel()
	if del, err := d.Receive(quiet); err == nil {
		t.Errorf("job %q delivered again after all were acked", del.ID)
	}
	t.Logf("%d settlements hit a dead channel and were redelivered", stale.Load())
}

// TestCheckWhileDown: while the broker refuses the connection Check and
// Stat report ErrDisconnected, and Receive and Publish keep waiting; when
// it is back the driver publishes and consumes again.
func TestCheckWhileDown(t *testing.T) {
	t.Parallel()
	addr := testVhost(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := Config{Queue: "down", RedialTimeout: time.Second}
	d, err := New(ctx, "down", Global{Addr: addr}, cfg, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer ccancel()
		_ = d.Close(cctx)
	}()
	vhost := strings.TrimPrefix(mustURL(t, addr).Path, "/")
	// Without permissions the reconnect fails until they are back.
	rabbitmqctl(t, "clear_permissions", "-p", vhost, "guest")
	rabbitmqctl(t, "close_all_connections", "--vhost", vhost, "test")
	waitFor(t, 10*time.Second, "Check to report the outage", func() bool { return errors.Is(d.Check(), ErrDisconnected) })
	if _, err := d.Stat(ctx); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Stat while down = %v, want ErrDisconnected", err)
	}

	got := make(chan *consumer.Delivery, 1)
	recvErr := make(chan error, 1)
	go func() {
		del, err := d.Receive(ctx)
		if err != nil {
			recvErr <- err
			return
		}
		got <- del
	}()
	// A Publish during the outage waits for the reconnect.
	pubErr := make(chan error, 1)
	go func() { pubErr <- d.Publish(ctx, numbered("down", 1)) }()
	rabbitmqctl(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	waitFor(t, 20*time.Second, "the driver to reconnect", func() bool { return d.Check() == nil })
	if err := <-pubErr; err != nil {
		t.Fatalf("Publish issued during the outage = %v", err)
	}
	select {
	case del := <-got:
		settle(t, del, consumer.Outcome{Action: consumer.Ack})
	case err := <-recvErr:
		t.Fatalf("Receive during the outage returned %v", err)
	case <-ctx.Done():
		t.Fatal("no delivery after reconnect")
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
