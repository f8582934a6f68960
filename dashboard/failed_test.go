package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/pipevisor/pipevisor/internal/exectest"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
	"github.com/pipevisor/pipevisor/frame"
	"github.com/pipevisor/pipevisor/jobs"
	"github.com/pipevisor/pipevisor/retry"
)

// fakeFailed is the dead store of the fake pipelines: orders keeps its
// dead jobs, emails has no dead-letter target. Retried jobs are recorded.
type fakeFailed struct {
	mu      sync.Mutex
	dead    []consumer.DeadJob // of orders, oldest first
	retried []string
}

func newFakeFailed() *fakeFailed {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	return &fakeFailed{dead: []consumer.DeadJob{
		{Job: consumer.Job{ID: "d1", Name: "App\\Job", Pipeline: "orders", Payload: []byte(strings.Repeat("x", 300)), Headers: map[string][]string{"h": {"v"}}, Priority: 5},
			Reason: "boom", Attempts: 3, At: at},
		{Job: consumer.Job{ID: "d2", Name: "App\\Other", Pipeline: "orders", Payload: []byte{0xff, 0x00, 'a'}}, Reason: "bad", Attempts: 1},
	}}
}

func (f *fakeFailed) store(pipeline string) error {
	switch pipeline {
	case "orders":
		return nil
	case "emails":
		return fmt.Errorf("jobs: failed jobs of %q: %w", pipeline, consumer.ErrNoDeadStore)
	}
	return fmt.Errorf("jobs: %q: %w", pipeline, consumer.ErrUnknownPipeline)
}

func (f *fakeFailed) FailedList(ctx context.Context, pipeline string, limit int) ([]consumer.DeadJob, error) {
	if err := f.store(pipeline); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := slices.Clone(f.dead)
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

func (f *fakeFailed) FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error) {
	dead, err := f.FailedList(ctx, pipeline, 0)
	if err != nil {
		return consumer.DeadJob{}, err
	}
	for _, d := range dead {
		if d.Job.ID == id {
			return d, nil
		}
	}
	return consumer.DeadJob{}, fmt.Errorf("jobs: %q: %w", id, consumer.ErrDeadNotFound)
}

// take removes the selected jobs, as the manager does: the ids done, and
// an error naming the ids it did not find.
func (f *fakeFailed) take(pipeline string, sel consumer.DeadSelection) ([]string, error) {
	if err := f.store(pipeline); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var done []string
	f.dead = slices.DeleteFunc(f.dead, func(d consumer.DeadJob) bool {
		if sel.Has(d.Job.ID) {
			done = append(done, d.Job.ID)
			return true
		}
		return false
	})
	for _, id := range sel.IDs {
		if !slices.Contains(done, id) {
			return done, fmt.Errorf("jobs: %q: %w", id, consumer.ErrDeadNotFound)
		}
	}
	return done, nil
}

func (f *fakeFailed) FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	done, err := f.take(pipeline, sel)
	f.mu.Lock()
	f.retried = append(f.retried, done...)
	f.mu.Unlock()
	return done, err
}

func (f *fakeFailed) FailedRemove(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return f.take(pipeline, sel)
}

func (f *fakeFailed) ids() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, d := range f.dead {
		out = append(out, d.Job.ID)
	}
	return out
}

// post sends a POST with a JSON body and the header pairs in hdr.
func (f *fixture) post(t *testing.T, path, body string, hdr ...string) (int, FailedActionReply) {
	t.Helper()
	req, err := http.NewRequest("POST", f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out FailedActionReply
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, out
}

// The failed page lists each pipeline's dead jobs oldest first with
// their reason, attempts, time and a payload preview, or why it has
// none; one job is shown in full, a binary payload in base64.
func TestFailedListAndShow(t *testing.T) {
	f := newFixture(t, "")
	var fr FailedReply
	f.getJSON(t, "/api/failed", &fr)
	if !fr.Available || len(fr.Pipelines) != 2 {
		t.Fatalf("failed = %+v", fr)
	}
	em, or := fr.Pipelines[0], fr.Pipelines[1]
	if em.Pipeline != "emails" || em.Available || !strings.Contains(em.Reason, "no dead-letter target") || len(em.Jobs) != 0 {
		t.Errorf("emails = %+v", em)
	}
	if or.Pipeline != "orders" || !or.Available || or.More || len(or.Jobs) != 2 {
		t.Fatalf("orders = %+v", or)
	}
	d1, d2 := or.Jobs[0], or.Jobs[1]
	if d1.ID != "d1" || d1.Name != "App\\Job" || d1.Reason != "boom" || d1.Attempts != 3 || d1.At == nil || !d1.At.Equal(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)) || len(d1.Preview) != previewBytes {
		t.Errorf("d1 = %+v", d1)
	}
	if d2.ID != "d2" || d2.Reason != "bad" || d2.At != nil || d2.Preview != "\uFFFD\x00a" {
		t.Errorf("d2 = %+v", d2)
	}

	var dj DeadJob
	f.getJSON(t, "/api/failed/orders/d1", &dj)
	if dj.ID != "d1" || dj.Pipeline != "orders" || len(dj.Payload) != 300 || dj.PayloadBase64 != nil || dj.Headers["h"][0] != "v" || dj.Attempts != 3 || dj.Priority != 5 || dj.Reason != "boom" {
		t.Errorf("d1 in full = %+v", dj)
	}
	f.getJSON(t, "/api/failed/orders/d2", &dj)
	if dj.Payload != "" || string(dj.PayloadBase64) != "\xff\x00a" {
		t.Errorf("binary payload = %q, base64 %q", dj.Payload, dj.PayloadBase64)
	}
	for _, p := range []string{"/api/failed/orders/nope", "/api/failed/emails/d1", "/api/failed/gone/d1"} {
		if code, body := f.do(t, "GET", p); code != http.StatusNotFound || !strings.Contains(body, `"error"`) {
			t.Errorf("GET %s = %d %s, want 404", p, code, body)
		}
	}
}

// manyFailed holds more dead jobs than the page shows.
type manyFailed struct {
	fakeFailed
}

// The list shows the oldest DeadListLimit jobs and says there are more.
func TestFailedListBounded(t *testing.T) {
	m := &manyFailed{}
	for i := range DeadListLimit + 50 {
		m.dead = append(m.dead, consumer.DeadJob{Job: consumer.Job{ID: fmt.Sprint("d", i)}})
	}
	root, _ := config.Parse([]byte(baseYAML))
	d, err := New(Config{Root: root, Stats: &fakeStats{paused: map[string]bool{}}, Failed: m})
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	d.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "http://127.0.0.1/api/failed", nil))
	var fr FailedReply
	if err := json.Unmarshal(rec.Body.Bytes(), &fr); err != nil {
		t.Fatal(err)
	}
	l := fr.Pipelines[1]
	if !l.More || len(l.Jobs) != DeadListLimit || l.Jobs[0].ID != "d0" || l.Jobs[DeadListLimit-1].ID != fmt.Sprint("d", DeadListLimit-1) {
		t.Errorf("list: more %v, %d jobs", l.More, len(l.Jobs))
	}
}

// Retry and remove need a POST with the session's CSRF token from this
// origin and a body naming ids or all; anything else changes nothing.
// Ids no store holds are named in a 404 with the ids that were done.
func TestFailedActions(t *testing.T) {
	f := newFixture(t, "")
	tok := f.csrf(t)
	for _, c := range []struct {
		name, path, body string
		hdr              []string
		want             int
	}{
		{"no token", "/api/failed/orders/retry", `{"ids":["d1"]}`, nil, http.StatusForbidden},
		{"wrong token", "/api/failed/orders/remove", `{"all":true}`, []string{csrfHeader, strings.Repeat("0", 64)}, http.StatusForbidden},
		{"other origin", "/api/failed/orders/remove", `{"all":true}`, []string{csrfHeader, tok, "Origin", "http://evil.example"}, http.StatusForbidden},
		{"cross site", "/api/failed/orders/retry", `{"all":true}`, []string{csrfHeader, tok, "Sec-Fetch-Site", "cross-site"}, http.StatusForbidden},
		{"no selection", "/api/failed/orders/remove", `{}`, []string{csrfHeader, tok}, http.StatusBadRequest},
		{"ids and all", "/api/failed/orders/remove", `{"ids":["d1"],"all":true}`, []string{csrfHeader, tok}, http.StatusBadRequest},
		{"not json", "/api/failed/orders/remove", `ids=d1`, []string{csrfHeader, tok}, http.StatusBadRequest},
		{"unknown action", "/api/failed/orders/purge", `{"all":true}`, []string{csrfHeader, tok}, http.StatusNotFound},
		{"no dead store", "/api/failed/emails/remove", `{"all":true}`, []string{csrfHeader, tok}, http.StatusNotFound},
		{"unknown pipeline", "/api/failed/gone/retry", `{"all":true}`, []string{csrfHeader, tok}, http.StatusNotFound},
	} {
		code, out := f.post(t, c.path, c.body, c.hdr...)
		if code != c.want || out.Error == "" {
			t.Errorf("%s: %d %+v, want %d and an error", c.name, code, out, c.want)
		}
		if got := f.failed.ids(); !slices.Equal(got, []string{"d1", "d2"}) {
			t.Fatalf("%s: the dead jobs are now %v", c.name, got)
		}
	}
	if code, body := f.do(t, "PUT", "/api/failed/orders/retry", csrfHeader, tok); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT = %d %s", code, body)
	}

	code, out := f.post(t, "/api/failed/orders/retry", `{"ids":["d2","nope"]}`, csrfHeader, tok, "Origin", f.srv.URL, "Sec-Fetch-Site", "same-origin")
	if code != http.StatusNotFound || !slices.Equal(out.IDs, []string{"d2"}) || !strings.Contains(out.Error, "nope") || !strings.Contains(out.Error, "no such failed job") {
		t.Errorf("retry d2 and nope = %d %+v", code, out)
	}
	if got := f.failed.ids(); !slices.Equal(got, []string{"d1"}) || !slices.Equal(f.failed.retried, []string{"d2"}) {
		t.Errorf("after retry: dead %v, retried %v", got, f.failed.retried)
	}
	code, out = f.post(t, "/api/failed/orders/remove", `{"all":true}`, csrfHeader, tok)
	if code != http.StatusOK || !slices.Equal(out.IDs, []string{"d1"}) || out.Error != "" {
		t.Errorf("remove all = %d %+v", code, out)
	}
	var fr FailedReply
	f.getJSON(t, "/api/failed", &fr)
	if len(fr.Pipelines[1].Jobs) != 0 || len(f.failed.retried) != 1 {
		t.Errorf("after remove: %+v, retried %v", fr.Pipelines[1], f.failed.retried)
	}
	code, out = f.post(t, "/api/failed/orders/retry", `{"all":true}`, csrfHeader, tok)
	if code != http.StatusOK || len(out.IDs) != 0 {
		t.Errorf("retry all of nothing = %d %+v", code, out)
	}
}

// With dashboard.auth the failed jobs and their actions need it, the
// CSRF token alone is not enough.
func TestFailedAuth(t *testing.T) {
	f := newFixture(t, "dashboard:\n  address: 127.0.0.1:8090\n  auth:\n    bearer: {token: t0ken-abc}\n")
	tok := f.csrf(t, "Authorization", "Bearer t0ken-abc")
	for _, p := range []string{"/api/failed", "/api/failed/orders/d1"} {
		if code, _ := f.do(t, "GET", p); code != http.StatusUnauthorized {
			t.Errorf("GET %s without auth = %d", p, code)
		}
	}
	for _, p := range []string{"/api/failed/orders/retry", "/api/failed/orders/remove"} {
		req, _ := http.NewRequest("POST", f.srv.URL+p, strings.NewReader(`{"all":true}`))
		req.Header.Set(csrfHeader, tok)
		resp, err := f.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST %s with the token but without auth = %d", p, resp.StatusCode)
		}
	}
	if got := f.failed.ids(); len(got) != 2 {
		t.Fatalf("without auth the dead jobs changed: %v", got)
	}
	code, out := f.post(t, "/api/failed/orders/remove", `{"ids":["d1"]}`, csrfHeader, tok, "Authorization", "Bearer t0ken-abc")
	if code != http.StatusOK || !slices.Equal(out.IDs, []string{"d1"}) || !slices.Equal(f.failed.ids(), []string{"d2"}) {
		t.Errorf("remove with auth = %d %+v, left %v", code, out, f.failed.ids())
	}
}

// switchExec fails every job until ok is set, then acks them.
type switchExec struct{ ok atomic.Bool }

func (e *switchExec) Exec(ctx context.Context, pl frame.Payload) (frame.Payload, error) {
	if !e.ok.Load() {
		return frame.Payload{}, errors.New("worker says no")
	}
	return frame.Payload{Body: []byte(`{"type":2,"data":{}}`)}, nil
}

// With a jobs manager and the memory driver: jobs that died are listed
// with the worker's reason; retrying one from the dashboard runs it again
// (acked) and takes it off the list; removing the other empties it.
func TestFailedRetryRunsTheJob(t *testing.T) {
	ctx := context.Background()
	exec := &switchExec{}
	p := config.Pipeline{Name: "orders", Driver: config.DriverMemory, Concurrency: 1,
		Retry: retry.Policy{MaxAttempts: 1}, Memory: &memjobs.Config{}}
	m := jobs.New(jobs.Config{
		Factory: func(ctx context.Context, p config.Pipeline) (jobs.Driver, error) {
			return memjobs.New(p.Name, *p.Memory, nil), nil
		},
		Executor:  exectest.Func(exec.Exec),
		Pipelines: map[string]config.Pipeline{"orders": p},
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	if err := m.Start(ctx, []string{"orders"}); err != nil {
		t.Fatal(err)
	}
	if err := m.Push(ctx, []consumer.Job{
		{ID: "j1", Name: "App\\Bill", Pipeline: "orders", Payload: []byte(`{"n":1}`)},
		{ID: "j2", Name: "App\\Bill", Pipeline: "orders", Payload: []byte(`{"n":2}`)},
	}); err != nil {
		t.Fatal(err)
	}
	root, err := config.Parse([]byte(baseYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Root: root, Stats: m, Failed: m})
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{srv: httptest.NewServer(d.Handler())}
	t.Cleanup(f.srv.Close)
	list := func() []DeadRow {
		t.Helper()
		var fr FailedReply
		f.getJSON(t, "/api/failed", &fr)
		if len(fr.Pipelines) != 1 || !fr.Pipelines[0].Available {
			t.Fatalf("failed = %+v", fr)
		}
		return fr.Pipelines[0].Jobs
	}
	acked := func() uint64 {
		t.Helper()
		st, err := m.Stat(ctx)
		if err != nil || len(st) != 1 {
			t.Fatalf("Stat = %+v, %v", st, err)
		}
		return st[0].Acked
	}
	waitUntil(t, "2 dead jobs listed", func() bool { return len(list()) == 2 })
	for _, r := range list() {
		if !strings.Contains(r.Reason, "worker says no") || r.Attempts != 1 || r.At == nil {
			t.Errorf("dead job = %+v, want the worker's reason", r)
		}
	}

	tok := f.csrf(t)
	if code, _ := f.post(t, "/api/failed/orders/retry", `{"ids":["j1"]}`); code != http.StatusForbidden || len(list()) != 2 {
		t.Fatalf("retry without the CSRF token = %d", code)
	}
	exec.ok.Store(true)
	code, out := f.post(t, "/api/failed/orders/retry", `{"ids":["j1"]}`, csrfHeader, tok)
	if code != http.StatusOK || !slices.Equal(out.IDs, []string{"j1"}) {
		t.Fatalf("retry j1 = %d %+v", code, out)
	}
	waitUntil(t, "j1 acked", func() bool { return acked() == 1 })
	if rows := list(); len(rows) != 1 || rows[0].ID != "j2" {
		t.Errorf("after retry the list is %+v, want j2 alone", rows)
	}
	code, out = f.post(t, "/api/failed/orders/remove", `{"ids":["j2"]}`, csrfHeader, tok)
	if code != http.StatusOK || !slices.Equal(out.IDs, []string{"j2"}) {
		t.Fatalf("remove j2 = %d %+v", code, out)
	}
	if rows := list(); len(rows) != 0 || acked() != 1 {
		t.Errorf("after remove: %+v, acked %d", rows, acked())
	}
}

// waitUntil polls cond until it holds, failing the test after 5s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
