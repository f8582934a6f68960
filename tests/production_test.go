package tests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// productionConfig is memoryConfig plus status and metrics addresses.
func productionConfig(t *testing.T, workers int, log, statusAddr, metricsAddr string) string {
	t.Helper()
	sections := fmt.Sprintf("status:\n  address: %s\nmetrics:\n  address: %s\n", statusAddr, metricsAddr)
	return e2eConfig(t, behaveWorker, log, workers, sections, `      driver: memory
      retry:
        max_attempts: 3
        backoff: {initial: 50ms, max: 200ms, multiplier: 2, jitter: 0}
`)
}

// httpGet returns the status and body of a GET, failing the test on a
// transport error.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// metricValue finds `name{...labels...} value` in a Prometheus text
// exposition; labels is the exact label set as printed (`pipeline="x"`),
// empty for none. ok is false when the series is absent.
func metricValue(body, name, labels string) (v float64, ok bool) {
	prefix := name + " "
	if labels != "" {
		prefix = name + "{" + labels + "} "
	}
	for _, line := range strings.Split(body, "\n") {
		if rest, found := strings.CutPrefix(line, prefix); found {
			f, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return f, err == nil
		}
	}
	return 0, false
}

func TestProductionMetricsMatchJobs(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	statusAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s := startSupervisor(t, productionConfig(t, 2, log, statusAddr, metricsAddr))

	// The RPC answers while the workers start; /health once one is up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpGet(t, "http://"+statusAddr+"/health")
		if code == 200 && body == "ok\n" {
			break
		}
		if code != 503 || time.Now().After(deadline) {
			t.Fatalf("/health: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, body := httpGet(t, "http://"+statusAddr+"/ready"); code != 200 || body != "ready\n" {
		t.Fatalf("/ready: %d %q", code, body)
	}

	const acks, fails, requeues = 300, 4, 3
	for _, p := range []struct {
		job   string
		count int
	}{{"ack", acks}, {"always-fail", fails}, {"requeue-once", requeues}} {
		if out, code := s.cli("push", "--pipeline", "default", "--job", p.job, "--payload", "x", "--count", strconv.Itoa(p.count)); code != 0 {
			t.Fatalf("push %s: exit %d: %s", p.job, code, out)
		}
	}
	// A push to a pipeline that does not exist fails and is counted.
	if out, code := s.cli("push", "--pipeline", "nope", "--job", "ack", "--payload", "x"); code == 0 {
		t.Fatalf("push to an unknown pipeline succeeded: %s", out)
	}
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool {
		return st.Acked >= acks+requeues && st.Dead >= fails
	})

	// Pulled at scrape time and pushed per job: the counters must agree
	// with each other, with `jobs stat` and with what was pushed.
	_, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	lbl := `pipeline="default"`
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"pipevisor_jobs_acked_total", lbl, acks + requeues},
		{"pipevisor_jobs_acked_total", lbl, float64(st.Acked)},
		{"pipevisor_jobs_dead_total", lbl, fails},
		{"pipevisor_jobs_retried_total", lbl, 2 * fails}, // attempts 1 and 2 retried, 3 dead
		{"pipevisor_jobs_requeued_total", lbl, requeues},
		{"pipevisor_jobs_received_total", lbl, acks + 3*fails + 2*requeues},
		{"pipevisor_exec_duration_seconds_count", lbl, acks + 3*fails + 2*requeues},
		{"pipevisor_jobs_failed_total", lbl, 0}, // NACKs are answers, not failures
		{"pipevisor_push_jobs_total", lbl, acks + fails + requeues},
		{"pipevisor_push_errors_total", lbl, 0},
		{"pipevisor_push_errors_total", `pipeline="(unknown)"`, 1},
		{"pipevisor_jobs_in_flight", lbl, 0},
		{"pipevisor_queue_ready", `driver="memory",pipeline="default"`, 0},
		{"pipevisor_pipeline_consuming", lbl, 1},
	} {
		if got, ok := metricValue(body, c.name, c.labels); !ok || got != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	live := 0.0
	for _, state := range []string{"ready", "working"} {
		v, _ := metricValue(body, "pipevisor_workers", `state="`+state+`"`)
		live += v
	}
	if live != 2 {
		t.Errorf("pipevisor_workers ready+working = %v, want 2", live)
	}
	if v, ok := metricValue(body, "pipevisor_workers_rss_bytes", ""); !ok || v <= 0 {
		t.Errorf("pipevisor_workers_rss_bytes = %v (present %v)", v, ok)
	}

	// A rolling reset replaces both workers: two restarts, reason reset.
	s.mustCLI("reset")
	deadline = time.Now().Add(30 * time.Second)
	for {
		_, body = httpGet(t, "http://"+metricsAddr+"/metrics")
		if v, _ := metricValue(body, "pipevisor_worker_restarts_total", `reason="reset"`); v == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("worker_restarts_total{reason=reset} never reached 2:\n%s", grep(body, "worker_restarts"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Shutdown: while a running job drains, /ready is 503 and says why.
	s.mustCLI("push", "--pipeline", "default", "--job", "slow", "--payload", "1500")
	s.waitStat("default", 10*time.Second, func(st pipelineStat) bool { return st.Active == 1 })
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		code, body := httpGet(t, "http://"+statusAddr+"/ready")
		if code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "stopped") {
				t.Errorf("/ready during shutdown: %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready still %d %q during shutdown", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if code := s.wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if _, err := net.DialTimeout("tcp", statusAddr, time.Second); err == nil {
		t.Fatal("status server still listening after exit")
	}
}

func grep(body, word string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// notifySocket listens on a unixgram socket and collects what is sent to
// it until the test ends.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "pv-notify") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ns := &notifySocket{path: filepath.Join(dir, "n.sock")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: ns.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			ns.mu.Lock()
			ns.msgs = append(ns.msgs, string(buf[:n]))
			ns.mu.Unlock()
		}
	})
	t.Cleanup(func() {
		conn.Close()
		wg.Wait()
	})
	return ns
}

func (ns *notifySocket) messages() []string {
	ns.mu.Lock()
	defer ns.mu.Unlock()
	return append([]string(nil), ns.msgs...)
}

// waitFor polls until cond holds on the messages, or fails after d.
func (ns *notifySocket) waitFor(t *testing.T, d time.Duration, what string, cond func([]string) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond(ns.messages()) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; got %q", what, ns.messages())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func count(msgs []string, m string) int {
	n := 0
	for _, x := range msgs {
		if x == m {
			n++
		}
	}
	return n
}

func TestProductionSdNotifyReadyWatchdogStopping(t *testing.T) {
	requireTool(t, "php")
	ns := listenNotify(t)
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log), "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=200000")

	ns.waitFor(t, 10*time.Second, "two WATCHDOG=1", func(m []string) bool { return count(m, "WATCHDOG=1") >= 2 })
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	ns.waitFor(t, 5*time.Second, "STOPPING=1", func(m []string) bool { return count(m, "STOPPING=1") == 1 })

	msgs := ns.messages()
	if msgs[0] != "READY=1" || count(msgs, "READY=1") != 1 {
		t.Fatalf("READY=1 is not the first and only ready message: %q", msgs)
	}
	if last := msgs[len(msgs)-1]; last != "STOPPING=1" {
		t.Fatalf("last message %q, want STOPPING=1: %q", last, msgs)
	}
	for _, m := range msgs[1 : len(msgs)-1] {
		if m != "WATCHDOG=1" {
			t.Fatalf("unexpected message %q between READY and STOPPING: %q", m, msgs)
		}
	}
}

func TestProductionStatusPortInUseFailsStart(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := productionConfig(t, 1, filepath.Join(t.TempDir(), "jobs.log"), busy.Addr().String(), freeAddr(t))
	out, code := runCLI(t, "serve", "-c", cfg)
	if code != 1 || !strings.Contains(out, "status.address") || !strings.Contains(out, busy.Addr().String()) {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

func TestProductionValidateUnitTimeout(t *testing.T) {
	dir := t.TempDir()
	unit := filepath.Join(dir, "pipevisor.service")
	if err := os.WriteFile(unit, []byte("[Service]\nExecStart=/usr/local/bin/supervisor serve\nTimeoutStopSec=30s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := memoryConfig(t, 1, filepath.Join(dir, "jobs.log")) // shutdown_timeout 20s + destroy_timeout 5s + 10s
	out, code := runCLI(t, "validate", "-c", cfg, "--unit", unit)
	if code != 0 {
		t.Fatalf("validate exit %d: %s", code, out)
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	found := false
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "warning: ") && strings.Contains(sc.Text(), "TimeoutStopSec=30s") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no TimeoutStopSec warning:\n%s", out)
	}
	if err := os.WriteFile(unit, []byte("[Service]\nTimeoutStopSec=2min\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, _ := runCLI(t, "validate", "-c", cfg, "--unit", unit); strings.Contains(out, "TimeoutStopSec") {
		t.Fatalf("warning with a long enough TimeoutStopSec:\n%s", out)
	}
}
