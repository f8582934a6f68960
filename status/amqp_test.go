package status_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer/amqpjobs"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
	"github.com/pipevisor/pipevisor/status"
)

// rabbit runs rabbitmqctl, failing the test on error.
func rabbit(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// rabbitVhost returns the address of a fresh vhost on the local RabbitMQ
// (SUPERVISOR_AMQP_URL, else amqpjobs.DefaultAddr), deleted at cleanup, so
// that closing its connections leaves other tests alone. Without the
// broker or rabbitmqctl the test is skipped, or fails when CI is set.
func rabbitVhost(t *testing.T) string {
	t.Helper()
	base := os.Getenv("SUPERVISOR_AMQP_URL")
	if base == "" {
		base = amqpjobs.DefaultAddr
	}
	missing := func(what string, err error) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s: %v", what, err)
		}
		t.Skipf("%s: %v (set CI to make this fail)", what, err)
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		missing("rabbitmqctl not installed", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", "-q", "status").CombinedOutput(); err != nil {
		missing("RabbitMQ not running", fmt.Errorf("%v: %s", err, out))
	}
	vhost := "pv-status-" + strings.ToLower(rand.Text()[:8])
	rabbit(t, "add_vhost", vhost)
	t.Cleanup(func() { rabbit(t, "delete_vhost", vhost) })
	rabbit(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + vhost
	return u.String()
}

// TestReadyFollowsRabbitMQConnection: RabbitMQ closes the pipeline's
// connection from the broker side; /ready goes 503 naming the pipeline,
// stays 503 while the broker refuses it, and is 200 again once the driver
// has redialled.
func TestReadyFollowsRabbitMQConnection(t *testing.T) {
	addr := rabbitVhost(t)
	vhost := strings.TrimPrefix(addr[strings.LastIndex(addr, "/"):], "/")
	mgr := jobs.New(jobs.Config{
		Factory: func(ctx context.Context, p config.Pipeline) (jobs.Driver, error) {
			g := amqpjobs.Global{Addr: addr}
			g.Defaults()
			return amqpjobs.New(ctx, p.Name, g, *p.AMQP, "", nil)
		},
		Executor: exectest.Func(ackExec{}.Exec),
		Pipelines: map[string]config.Pipeline{
			"orders": {Driver: config.DriverAMQP, Concurrency: 1, Retry: retry.Defaults(), AMQP: func() *amqpjobs.Config {
				c := &amqpjobs.Config{Queue: "orders", RedialTimeout: 5 * time.Second}
				c.Defaults()
				return c
			}()},
		},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = mgr.Stop(ctx)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mgr.Start(ctx, []string{"orders"}); err != nil {
		t.Fatal(err)
	}
	url := serve(t, status.New(status.Config{Ready: mgr.Ready}))
	waitStatus(t, url+"/ready", http.StatusOK)

	// Revoke guest's access first, so the redial cannot succeed before
	// /ready has been seen red.
	rabbit(t, "clear_permissions", "-p", vhost, "guest")
	rabbit(t, "close_all_connections", "--vhost", vhost, "status test")
	body := waitStatus(t, url+"/ready", http.StatusServiceUnavailable)
	if !strings.Contains(body, "pipeline orders") {
		t.Fatalf("503 body %q does not name the pipeline", body)
	}
	time.Sleep(200 * time.Millisecond) // a redial attempt or two fails meanwhile
	if code, body := get(t, url+"/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("/ready %d %q while the broker refuses the pipeline", code, body)
	}
	rabbit(t, "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := get(t, url+"/ready")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready still %d %q 30s after the connection was closed", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
