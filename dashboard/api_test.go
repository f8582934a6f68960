package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
	"github.com/pipevisor/pipevisor/pool"
)

// fakeStats is a jobs manager: two pipelines, pause/resume recorded.
type fakeStats struct {
	mu     sync.Mutex
	paused map[string]bool
	err    string // put into every Stat's Error
}

func (f *fakeStats) Stat(ctx context.Context) ([]consumer.Stat, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []consumer.Stat{
		{Pipeline: "orders", Driver: "memory", Ready: 7, Active: 2, Delayed: 1, Acked: 40, Dead: 3, Consuming: true},
		{Pipeline: "emails", Driver: "amqp", Queue: "emails", Ready: -1, Active: 0, Delayed: -1, Consuming: true},
	}
	for i := range out {
		if f.paused[out[i].Pipeline] {
			out[i].Consuming, out[i].Error = false, "pipeline "+out[i].Pipeline+": "+pipeline.ErrPaused.Error()
		}
		if f.err != "" {
			out[i].Consuming, out[i].Error = false, f.err
		}
	}
	return out, nil
}

func (f *fakeStats) set(names []string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range names {
		if n != "orders" && n != "emails" {
			return fmt.Errorf("jobs: %q: %w", names, consumer.ErrUnknownPipeline)
		}
		f.paused[n] = paused
	}
	return nil
}

func (f *fakeStats) Pause(ctx context.Context, names []string) error  { return f.set(names, true) }
func (f *fakeStats) Resume(ctx context.Context, names []string) error { return f.set(names, false) }

func (f *fakeStats) isPaused(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paused[name]
}

type fakeWorkers []pool.WorkerInfo

func (w fakeWorkers) Workers() []pool.WorkerInfo { return w }

const baseYAML = "version: \"3\"\nserver:\n  command: php worker.php\njobs:\n  pipelines:\n    orders: {driver: memory}\n"

type fixture struct {
	srv    *httptest.Server
	stats  *fakeStats
	hist   *History
	failed *fakeFailed
}

// newFixture serves a dashboard over root (baseYAML + extra).
func newFixture(t *testing.T, extra string) *fixture {
	t.Helper()
	root, err := config.Parse([]byte(baseYAML + extra))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{stats: &fakeStats{paused: map[string]bool{}}, hist: NewHistory(nil), failed: newFakeFailed()}
	since := time.Now().Add(-1500 * time.Millisecond)
	d, err := New(Config{
		Root:  root,
		Stats: f.stats,
		Workers: fakeWorkers{
			{Pid: 42, State: "working", Jobs: 9, RSS: 32 << 20, Created: time.Now(), CurrentJob: "job-7", CurrentJobSince: since},
			{Pid: 41, State: "ready", Jobs: 3},
		},
		Failed:  f.failed,
		History: f.hist,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(d.Handler())
	t.Cleanup(f.srv.Close)
	return f
}

// do sends a request with the header pairs in hdr; it returns the status
// and body.
func (f *fixture) do(t *testing.T, method, path string, hdr ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (f *fixture) getJSON(t *testing.T, path string, v any, hdr ...string) {
	t.Helper()
	code, body := f.do(t, "GET", path, hdr...)
	if code != http.StatusOK {
		t.Fatalf("GET %s = %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func (f *fixture) csrf(t *testing.T, hdr ...string) string {
	var s sessionReply
	f.getJSON(t, "/api/session", &s, hdr...)
	if len(s.CSRF) < 32 {
		t.Fatalf("csrf token %q", s.CSRF)
	}
	return s.CSRF
}

// The overview has every pipeline's stat numbers, its state and the
// history's rate and percentiles; the pages and assets are served.
func TestOverview(t *testing.T) {
	f := newFixture(t, "")
	for i := 0; i < 4; i++ {
		f.hist.Observe("orders", pipeline.Fate{Action: consumer.Ack, Exec: time.Duration(i+1) * 10 * time.Millisecond, Took: time.Second})
	}
	f.stats.Pause(context.Background(), []string{"emails"})
	var ov OverviewReply
	f.getJSON(t, "/api/overview", &ov)
	if len(ov.Pipelines) != 2 || ov.Pipelines[0].Name != "emails" || ov.Pipelines[1].Name != "orders" {
		t.Fatalf("pipelines = %+v", ov.Pipelines)
	}
	o, e := ov.Pipelines[1], ov.Pipelines[0]
	if o.State != "consuming" || o.Ready != 7 || o.Running != 2 || o.Delayed != 1 || o.Dead != 3 || o.Acked != 40 {
		t.Errorf("orders = %+v", o)
	}
	if o.Samples != 4 || o.P50Ms != 20 || o.P99Ms != 40 || o.PerSecond <= 0 {
		t.Errorf("orders summary = %+v", o.Summary)
	}
	if e.State != "paused" || e.Ready != -1 || e.Samples != 0 {
		t.Errorf("emails = %+v", e)
	}
	if !ov.History || ov.Total.Samples != 4 {
		t.Errorf("total = %+v", ov.Total)
	}

	f.stats.err = "pipeline orders: driver: connection refused"
	f.getJSON(t, "/api/overview", &ov)
	if ov.Pipelines[1].State != "down" || !strings.Contains(ov.Pipelines[1].Error, "connection refused") {
		t.Errorf("down pipeline = %+v", ov.Pipelines[1])
	}

	for path, want := range map[string]string{"/": "Pipevisor dashboard", "/assets/app.js": "/api/overview", "/assets/style.css": "table"} {
		code, body := f.do(t, "GET", path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s = %d, body without %q", path, code, want)
		}
	}
	if code, _ := f.do(t, "GET", "/api/nope"); code != http.StatusNotFound {
		t.Errorf("unknown endpoint = %d", code)
	}
}

// The history and the workers.
func TestHistoryWorkers(t *testing.T) {
	f := newFixture(t, "")
	f.hist.Observe("orders", pipeline.Fate{Action: consumer.Ack, Exec: time.Millisecond, Took: 3 * time.Millisecond})
	var h HistoryReply
	f.getJSON(t, "/api/history?pipeline=orders", &h)
	last := h.Points[len(h.Points)-1]
	if h.Pipeline != "orders" || h.BucketSeconds != BucketWidth.Seconds() || last.Jobs != 1 || last.WaitMs != 2 {
		t.Errorf("history = %s %v, last %+v", h.Pipeline, h.BucketSeconds, last)
	}

	var ws struct{ Workers []WorkerRow }
	f.getJSON(t, "/api/workers", &ws)
	if len(ws.Workers) != 2 || ws.Workers[0].Pid != 41 || ws.Workers[1].CurrentJob != "job-7" || ws.Workers[1].RunningMs < 1500 || ws.Workers[1].RSS != 32<<20 {
		t.Errorf("workers = %+v", ws.Workers)
	}
	if ws.Workers[0].CurrentJob != "" || ws.Workers[0].RunningMs != 0 {
		t.Errorf("idle worker = %+v", ws.Workers[0])
	}

}

// Without Failed the failed page says it is not available.
func TestFailedUnavailable(t *testing.T) {
	root, _ := config.Parse([]byte(baseYAML))
	d, err := New(Config{Root: root, Stats: &fakeStats{paused: map[string]bool{}}})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/api/failed", nil))
	var fr FailedReply
	if err := json.Unmarshal(rec.Body.Bytes(), &fr); err != nil || fr.Available || fr.Reason == "" {
		t.Errorf("failed = %d %s", rec.Code, rec.Body)
	}
}

// Pause and resume need a POST with the session's CSRF token and, when
// the browser sends one, this origin; anything else changes nothing.
func TestControlCSRF(t *testing.T) {
	f := newFixture(t, "")
	tok := f.csrf(t)
	for _, c := range []struct {
		name   string
		method string
		hdr    []string
		want   int
	}{
		{"no token", "POST", nil, http.StatusForbidden},
		{"wrong token", "POST", []string{csrfHeader, strings.Repeat("0", 64)}, http.StatusForbidden},
		{"other origin", "POST", []string{csrfHeader, tok, "Origin", "http://evil.example"}, http.StatusForbidden},
		{"cross site", "POST", []string{csrfHeader, tok, "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"GET", "GET", []string{csrfHeader, tok}, http.StatusMethodNotAllowed},
	} {
		code, body := f.do(t, c.method, "/api/pipelines/orders/pause", c.hdr...)
		if code != c.want {
			t.Errorf("%s: %d %s, want %d", c.name, code, body, c.want)
		}
		if f.stats.isPaused("orders") {
			t.Fatalf("%s: the pipeline was paused", c.name)
		}
	}
	origin := f.srv.URL
	code, body := f.do(t, "POST", "/api/pipelines/orders/pause", csrfHeader, tok, "Origin", origin, "Sec-Fetch-Site", "same-origin")
	if code != http.StatusOK || !f.stats.isPaused("orders") {
		t.Fatalf("pause with token = %d %s, paused %v", code, body, f.stats.isPaused("orders"))
	}
	if code, _ := f.do(t, "POST", "/api/pipelines/orders/resume", csrfHeader, tok); code != http.StatusOK || f.stats.isPaused("orders") {
		t.Fatalf("resume = %d, paused %v", code, f.stats.isPaused("orders"))
	}
	if code, body := f.do(t, "POST", "/api/pipelines/nope/pause", csrfHeader, tok); code != http.StatusNotFound || !strings.Contains(body, "unknown") {
		t.Errorf("unknown pipeline = %d %s", code, body)
	}
	if code, _ := f.do(t, "POST", "/api/pipelines/orders/destroy", csrfHeader, tok); code != http.StatusNotFound {
		t.Errorf("unknown action = %d", code)
	}
}

// With dashboard.auth every page, asset and action needs it (401 with a
// challenge otherwise); the right credentials get through.
func TestAuth(t *testing.T) {
	paths := []string{"/", "/assets/app.js", "/api/session", "/api/overview", "/api/history", "/api/workers", "/api/failed", "/api/config"}
	t.Run("basic", func(t *testing.T) {
		f := newFixture(t, "dashboard:\n  address: 0.0.0.0:8090\n  auth:\n    basic: {user: ops, password: hunter22}\n")
		for _, p := range paths {
			code, _ := f.do(t, "GET", p)
			if code != http.StatusUnauthorized {
				t.Errorf("GET %s without auth = %d, want 401", p, code)
			}
			if code, _ := f.do(t, "GET", p, "Authorization", "Basic b3BzOndyb25n"); code != http.StatusUnauthorized { // ops:wrong
				t.Errorf("GET %s with a wrong password = %d, want 401", p, code)
			}
			if code, _ := f.do(t, "GET", p, "Authorization", "Basic b3BzOmh1bnRlcjIy"); code != http.StatusOK { // ops:hunter22
				t.Errorf("GET %s with auth = %d, want 200", p, code)
			}
		}
		req, _ := http.NewRequest("GET", f.srv.URL+"/", nil)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("challenge = %q", resp.Header.Get("WWW-Authenticate"))
		}
		tok := f.csrf(t, "Authorization", "Basic b3BzOmh1bnRlcjIy")
		if code, _ := f.do(t, "POST", "/api/pipelines/orders/pause", csrfHeader, tok); code != http.StatusUnauthorized || f.stats.isPaused("orders") {
			t.Errorf("pause with the token but no auth = %d", code)
		}
		if code, _ := f.do(t, "POST", "/api/pipelines/orders/pause", csrfHeader, tok, "Authorization", "Basic b3BzOmh1bnRlcjIy"); code != http.StatusOK || !f.stats.isPaused("orders") {
			t.Errorf("pause with auth = %d", code)
		}
	})
	t.Run("bearer", func(t *testing.T) {
		f := newFixture(t, "dashboard:\n  address: 127.0.0.1:8090\n  auth:\n    bearer: {token: t0ken-abc}\n")
		for _, p := range paths {
			if code, _ := f.do(t, "GET", p, "Authorization", "Bearer nope"); code != http.StatusUnauthorized {
				t.Errorf("GET %s with a wrong token = %d, want 401", p, code)
			}
			if code, _ := f.do(t, "GET", p, "Authorization", "Bearer t0ken-abc"); code != http.StatusOK {
				t.Errorf("GET %s with the token = %d, want 200", p, code)
			}
		}
	})
}

// Without auth only loopback hosts are served (a DNS-rebound name is
// refused); a non-loopback address without auth does not start.
func TestNoAuthLoopbackOnly(t *testing.T) {
	f := newFixture(t, "")
	if code, _ := f.do(t, "GET", "/api/overview", "Host", "evil.example:8090"); code != http.StatusForbidden {
		t.Errorf("foreign Host = %d, want 403", code)
	}
	if code, _ := f.do(t, "GET", "/api/overview", "Host", "localhost:8090"); code != http.StatusOK {
		t.Errorf("localhost = %d, want 200", code)
	}
	root, _ := config.Parse([]byte(baseYAML))
	root.Dashboard.Address = "0.0.0.0:8090"
	if _, err := New(Config{Root: root, Stats: f.stats}); !errors.Is(err, ErrAuthRequired) || !strings.Contains(err.Error(), "dashboard.auth") {
		t.Errorf("New on 0.0.0.0 without auth = %v", err)
	}
	root.Dashboard.Address = "localhost:0"
	ln, err := Listen(context.Background(), root)
	if err != nil {
		t.Fatalf("Listen on localhost: %v", err)
	}
	ln.Close()
	root.Dashboard.Address = ":0"
	if ln, err := Listen(context.Background(), root); !errors.Is(err, ErrAuthRequired) {
		if ln != nil {
			ln.Close()
		}
		t.Errorf("Listen on every interface without auth = %v", err)
	}
}
