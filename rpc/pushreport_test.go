package rpc

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
)

// batchErr is what a driver returns for a batch of which job 1 was
// refused and job 2 lost its confirm.
func batchErr() error {
	return fmt.Errorf("jobs: push to %q: %w", "emails", &consumer.BatchError{Failed: map[int]error{
		1: errors.New("broker nacked the publish"),
		2: fmt.Errorf("channel closed (%w)", consumer.ErrInDoubt),
	}})
}

// TestPushReportOverProto: a PushBatch the manager confirmed in part
// comes back to the Go client as a ServerError whose message is the
// manager's (without the report) and whose PushReport says which jobs
// were confirmed, failed and in doubt.
func TestPushReportOverProto(t *testing.T) {
	fake := &fakeJobs{err: batchErr()}
	c := dialClient(t, startServer(t, NewServer(fake, fake, nil), "tcp://127.0.0.1:0"))
	jobs := make([]consumer.Job, 4)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: fmt.Sprint(i), Pipeline: "emails"}
	}
	err := c.PushBatch(testCtx(t), jobs)
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("PushBatch = %v, want a ServerError", err)
	}
	if strings.Contains(err.Error(), PushReportMarker) || se.Message != batchErr().Error() {
		t.Errorf("error text %q, want the manager's message %q", se.Message, batchErr())
	}
	rep, perr := PushReport(len(jobs), err)
	if perr != nil || fmt.Sprint(rep.Confirmed, rep.Failed, rep.InDoubt) != "[0 3] [1] [2]" {
		t.Errorf("PushReport = %+v, %v; want confirmed [0 3], failed [1], in doubt [2]", rep, perr)
	}

	// One job: a manager error that is not a batch error applies to it.
	fake.setErr(fmt.Errorf("publish: %w", consumer.ErrInDoubt))
	err = c.Push(testCtx(t), jobs[0])
	if rep, _ := PushReport(1, err); len(rep.InDoubt) != 1 {
		t.Errorf("Push in doubt: report %+v of %v", rep, err)
	}
	fake.setErr(errBoom)
	err = c.Push(testCtx(t), jobs[0])
	if rep, _ := PushReport(1, err); len(rep.Failed) != 1 {
		t.Errorf("Push refused: report %+v of %v", rep, err)
	}
	fake.setErr(nil)
	if rep, err := PushReport(2, c.PushBatch(testCtx(t), jobs[:2])); err != nil || len(rep.Confirmed) != 2 {
		t.Errorf("PushBatch that succeeded: report %+v, %v", rep, err)
	}
}

// TestPushReportOverJSON pins the error reply of the JSON codec that the
// PHP and Python producers parse: an ERROR frame (so RoadRunner's SDK
// throws) whose text is the manager's message, PushReportMarker and the
// report as inclusive index ranges.
func TestPushReportOverJSON(t *testing.T) {
	fake := &fakeJobs{err: batchErr()}
	rc := dialRaw(t, startServer(t, NewServer(fake, fake, nil), "tcp://127.0.0.1:0"))
	job := `{"job":"J","id":"%d","options":{"pipeline":"emails"}}`
	body := `{"jobs":[` + fmt.Sprintf(job, 0) + "," + fmt.Sprintf(job, 1) + "," + fmt.Sprintf(job, 2) + "," + fmt.Sprintf(job, 3) + `]}`
	r := jsonCall(t, rc, 1, "jobs.PushBatch", body)
	want := batchErr().Error() + ` pipevisor-push-report={"confirmed":[[0,0],[3,3]],"failed":[[1,1]],"in_doubt":[[2,2]]}`
	if !r.isError() || string(r.body) != want {
		t.Errorf("reply (error %v) %q, want %q", r.isError(), r.body, want)
	}
	fake.setErr(nil)
	r = jsonCall(t, rc, 2, "jobs.PushBatch", body)
	if r.isError() {
		t.Errorf("a confirmed batch got an error: %q", r.body)
	}
}

// TestPushReportWithoutServerReport: a refused call (no report) fails
// every job; a call cut short by the transport leaves every job in doubt;
// a report that does not cover the batch is rejected.
func TestPushReportWithoutServerReport(t *testing.T) {
	if rep, err := PushReport(3, &ServerError{Method: "jobs.PushBatch", Message: "rpc: job has no pipeline"}); err != nil || len(rep.Failed) != 3 {
		t.Errorf("refused call: %+v, %v", rep, err)
	}
	if rep, err := PushReport(3, fmt.Errorf("jobs.PushBatch: %w", errors.New("connection reset by peer"))); err != nil || len(rep.InDoubt) != 3 {
		t.Errorf("broken call: %+v, %v", rep, err)
	}
	msg, push := splitPushReport(`boom pipevisor-push-report={"confirmed":[[0,1]],"failed":[[1,1]],"in_doubt":[]}`)
	if msg != "boom" || push == nil {
		t.Fatalf("split = %q, %v", msg, push)
	}
	rep, err := PushReport(2, &ServerError{Method: "jobs.PushBatch", Message: msg, push: push})
	if !errors.Is(err, ErrBadPushReport) || len(rep.InDoubt) != 2 {
		t.Errorf("overlapping report: %+v, %v; want ErrBadPushReport and all in doubt", rep, err)
	}
}
