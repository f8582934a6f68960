package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// failedFake is a Jobs with FailedJobs over a fixed dead list.
type failedFake struct {
	*fakeJobs
	mu   sync.Mutex
	dead []consumer.DeadJob
	sels []string // "retry pipeline sel" / "remove pipeline sel", as asked
}

func (f *failedFake) FailedList(_ context.Context, pipeline string, limit int) ([]consumer.DeadJob, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []consumer.DeadJob
	for _, d := range f.dead {
		if (pipeline == "" || d.Job.Pipeline == pipeline) && (limit == 0 || len(out) < limit) {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *failedFake) FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error) {
	all, _ := f.FailedList(ctx, pipeline, 0)
	for _, d := range all {
		if d.Job.ID == id {
			return d, nil
		}
	}
	return consumer.DeadJob{}, fmt.Errorf("jobs: %q: %w", id, consumer.ErrDeadNotFound)
}

func (f *failedFake) take(verb, pipeline string, sel consumer.DeadSelection) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sels = append(f.sels, fmt.Sprintf("%s %q %v %v", verb, pipeline, sel.IDs, sel.All))
	var ids []string
	f.dead = slices.DeleteFunc(f.dead, func(d consumer.DeadJob) bool {
		if sel.Has(d.Job.ID) && (pipeline == "" || pipeline == d.Job.Pipeline) {
			ids = append(ids, d.Job.ID)
			return true
		}
		return false
	})
	return ids
}

func (f *failedFake) FailedRetry(_ context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return f.take("retry", pipeline, sel), nil
}

func (f *failedFake) FailedRemove(_ context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return f.take("remove", pipeline, sel), nil
}

func deadFixture() []consumer.DeadJob {
	at := time.Unix(1765000000, 123)
	return []consumer.DeadJob{
		{Job: consumer.Job{ID: "j1", Name: "App\\Mail", Pipeline: "emails", Payload: []byte(`{"to":"a"}`),
			Headers: map[string][]string{"tenant": {"acme"}}, Priority: 3, Key: "k"},
			Reason: "nacked: bad address", Attempts: 2, At: at},
		{Job: consumer.Job{ID: "j2", Name: "App\\Resize", Pipeline: "images", Payload: []byte("x")},
			Reason: "worker crashed | PHP Fatal error", Attempts: 3, At: at},
	}
}

// The Go client (protobuf codec) lists, shows, retries and removes failed
// jobs with every field intact.
func TestFailedProtoCodec(t *testing.T) {
	f := &failedFake{fakeJobs: &fakeJobs{}, dead: deadFixture()}
	addr := startServer(t, NewServer(f, nil, nil), "tcp://127.0.0.1:0")
	ctx := context.Background()
	cl, err := Dial(ctx, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	all, err := cl.FailedList(ctx, "", 0)
	if err != nil || len(all) != 2 {
		t.Fatalf("FailedList = %v, %v", all, err)
	}
	want := deadFixture()[0]
	got := all[0]
	if got.Job.ID != want.Job.ID || got.Job.Name != want.Job.Name || got.Job.Pipeline != "emails" ||
		string(got.Job.Payload) != string(want.Job.Payload) || got.Job.Headers["tenant"][0] != "acme" ||
		got.Job.Priority != 3 || got.Job.Key != "k" || got.Reason != want.Reason || got.Attempts != 2 || !got.At.Equal(want.At) {
		t.Errorf("FailedList[0] = %+v, want %+v", got, want)
	}
	if one, _ := cl.FailedList(ctx, "images", 0); len(one) != 1 || one[0].Job.ID != "j2" {
		t.Errorf("FailedList(images) = %v", one)
	}
	if d, err := cl.FailedShow(ctx, "", "j2"); err != nil || d.Reason != "worker crashed | PHP Fatal error" {
		t.Errorf("FailedShow(j2) = %+v, %v", d, err)
	}
	_, err = cl.FailedShow(ctx, "", "nope")
	var se *ServerError
	if !errors.As(err, &se) || !strings.Contains(se.Message, consumer.ErrDeadNotFound.Error()) {
		t.Errorf("FailedShow(nope) = %v, want the not-found message", err)
	}
	if ids, err := cl.FailedRetry(ctx, "emails", consumer.DeadSelection{IDs: []string{"j1"}}); err != nil || !slices.Equal(ids, []string{"j1"}) {
		t.Errorf("FailedRetry(j1) = %v, %v", ids, err)
	}
	if ids, err := cl.FailedRemove(ctx, "", consumer.DeadSelection{All: true}); err != nil || !slices.Equal(ids, []string{"j2"}) {
		t.Errorf("FailedRemove(all) = %v, %v", ids, err)
	}
	if want := []string{`retry "emails" [j1] false`, `remove "" [] true`}; !slices.Equal(f.sels, want) {
		t.Errorf("manager was asked %q, want %q", f.sels, want)
	}
}

// The JSON codec (the PHP and Python producers) speaks the same methods
// with the bodies documented in doc.go.
func TestFailedJSONCodec(t *testing.T) {
	f := &failedFake{fakeJobs: &fakeJobs{}, dead: deadFixture()}
	addr := startServer(t, NewServer(f, nil, nil), "tcp://127.0.0.1:0")
	rc := dialRaw(t, addr)

	r := jsonCall(t, rc, 1, "jobs.FailedList", `{"pipeline":"emails","limit":10}`)
	if r.isError() {
		t.Fatalf("FailedList error %s", r.body)
	}
	var list struct {
		Jobs []struct {
			Job struct {
				ID      string                         `json:"id"`
				Job     string                         `json:"job"`
				Payload []byte                         `json:"payload"`
				Headers map[string]map[string][]string `json:"headers"`
				Options struct {
					Pipeline string `json:"pipeline"`
				} `json:"options"`
			} `json:"job"`
			Reason   string `json:"reason"`
			Attempts int64  `json:"attempts"`
			DiedAt   int64  `json:"died_at"`
		} `json:"jobs"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatalf("FailedList body %s: %v", r.body, err)
	}
	if len(list.Jobs) != 1 {
		t.Fatalf("FailedList(emails) = %s", r.body)
	}
	j := list.Jobs[0]
	if j.Job.ID != "j1" || j.Job.Job != "App\\Mail" || string(j.Job.Payload) != `{"to":"a"}` || j.Job.Headers["tenant"]["value"][0] != "acme" ||
		j.Job.Options.Pipeline != "emails" || j.Reason != "nacked: bad address" || j.Attempts != 2 || j.DiedAt != time.Unix(1765000000, 123).UnixNano() {
		t.Errorf("FailedList(emails) = %s", r.body)
	}
	if r := jsonCall(t, rc, 2, "jobs.FailedShow", `{"id":"j2"}`); r.isError() || !strings.Contains(string(r.body), `"reason":"worker crashed | PHP Fatal error"`) {
		t.Errorf("FailedShow(j2) = %s", r.body)
	}
	if r := jsonCall(t, rc, 3, "jobs.FailedShow", `{"id":"zz"}`); !r.isError() || !strings.Contains(string(r.body), "no such failed job") {
		t.Errorf("FailedShow(zz) = %s, want an error reply", r.body)
	}
	if r := jsonCall(t, rc, 4, "jobs.FailedRetry", `{"ids":["j2"]}`); r.isError() || string(r.body) != `{"ids":["j2"]}` {
		t.Errorf("FailedRetry(j2) = %s", r.body)
	}
	if r := jsonCall(t, rc, 5, "jobs.FailedRemove", `{"all":true,"pipeline":"emails"}`); r.isError() || string(r.body) != `{"ids":["j1"]}` {
		t.Errorf("FailedRemove(all) = %s", r.body)
	}
}

// A server whose Jobs keeps no failed jobs says so.
func TestFailedWithoutStore(t *testing.T) {
	addr := startServer(t, NewServer(&fakeJobs{}, nil, nil), "tcp://127.0.0.1:0")
	cl, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.FailedList(context.Background(), "", 0); err == nil || !strings.Contains(err.Error(), ErrNoFailedJobs.Error()) {
		t.Errorf("FailedList = %v, want %v", err, ErrNoFailedJobs)
	}
}

// WithFailedJobs serves the methods when the Jobs is a wrapper without
// them.
func TestWithFailedJobs(t *testing.T) {
	f := &failedFake{fakeJobs: &fakeJobs{}, dead: deadFixture()}
	addr := startServer(t, NewServer(&fakeJobs{}, nil, nil, WithFailedJobs(f)), "tcp://127.0.0.1:0")
	cl, err := Dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if all, err := cl.FailedList(context.Background(), "", 0); err != nil || len(all) != 2 {
		t.Errorf("FailedList = %v, %v", all, err)
	}
}
