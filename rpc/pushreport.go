package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/pipevisor/pipevisor/consumer"
)

// PushReportMarker separates the message of a failed jobs.Push or
// jobs.PushBatch from its push report in the error text of the reply (see
// the package doc, "Push errors").
const PushReportMarker = " pipevisor-push-report="

// pushReportJSON is the push report on the wire: each list holds inclusive
// [first, last] ranges of indexes into the call's jobs, ascending.
type pushReportJSON struct {
	Confirmed [][2]int `json:"confirmed"`
	Failed    [][2]int `json:"failed"`
	InDoubt   [][2]int `json:"in_doubt"`
}

// PushError is the error jobs.Push and jobs.PushBatch return when the
// manager did not confirm every job: Err's message followed by the report
// of what became of each job.
type PushError struct {
	Err    error
	Report consumer.PublishReport
}

// newPushError returns the error of a push of n jobs that failed with err.
func newPushError(n int, err error) error {
	return &PushError{Err: err, Report: consumer.ReportOf(n, err)}
}

// Error is Err's message, PushReportMarker and the report as JSON.
func (e *PushError) Error() string {
	b, err := json.Marshal(pushReportJSON{
		Confirmed: ranges(e.Report.Confirmed),
		Failed:    ranges(e.Report.Failed),
		InDoubt:   ranges(e.Report.InDoubt),
	})
	if err != nil { // cannot happen: only ints
		return e.Err.Error()
	}
	return e.Err.Error() + PushReportMarker + string(b)
}

// Unwrap returns Err.
func (e *PushError) Unwrap() error { return e.Err }

// ranges turns ascending indexes into inclusive [first, last] ranges.
func ranges(xs []int) [][2]int {
	out := [][2]int{}
	for _, x := range xs {
		if n := len(out); n > 0 && out[n-1][1] == x-1 {
			out[n-1][1] = x
			continue
		}
		out = append(out, [2]int{x, x})
	}
	return out
}

// expand turns ranges back into indexes, checking each against n.
func expand(rs [][2]int, n int, seen []bool) ([]int, error) {
	var out []int
	for _, r := range rs {
		if r[0] < 0 || r[1] < r[0] || r[1] >= n {
			return nil, fmt.Errorf("range %v outside the batch of %d", r, n)
		}
		for i := r[0]; i <= r[1]; i++ {
			if seen[i] {
				return nil, fmt.Errorf("job %d reported twice", i)
			}
			seen[i] = true
			out = append(out, i)
		}
	}
	return out, nil
}

// splitPushReport splits the error text of a reply into the message and
// the push report it carries, if any (report is nil then).
func splitPushReport(text string) (msg string, report *pushReportJSON) {
	i := strings.LastIndex(text, PushReportMarker)
	if i < 0 {
		return text, nil
	}
	var r pushReportJSON
	if err := json.Unmarshal([]byte(text[i+len(PushReportMarker):]), &r); err != nil {
		return text, nil
	}
	return text[:i], &r
}

// ErrBadPushReport is returned by PushReport when the server's report does
// not cover the n jobs of the call exactly once each.
var ErrBadPushReport = errors.New("rpc: push report does not match the batch")

// PushReport tells what became of the n jobs of a Client.Push (n = 1) or
// Client.PushBatch call that returned err: nil means all confirmed; a
// *ServerError that carries the server's push report gives each job's
// state; any other *ServerError means the server refused the call before
// publishing anything (all failed); any other error (the connection broke,
// ctx ended during the call) leaves every job in doubt, since the server
// may have published them. A report that does not cover the n jobs
// exactly once each leaves every job in doubt and returns
// ErrBadPushReport.
func PushReport(n int, err error) (consumer.PublishReport, error) {
	if err == nil {
		return consumer.ReportOf(n, nil), nil
	}
	var se *ServerError
	if !errors.As(err, &se) {
		return consumer.ReportOf(n, fmt.Errorf("%w: %w", consumer.ErrInDoubt, err)), nil
	}
	if se.push == nil {
		return consumer.ReportOf(n, err), nil
	}
	seen := make([]bool, n)
	var r consumer.PublishReport
	var bad error
	if r.Confirmed, bad = expand(se.push.Confirmed, n, seen); bad == nil {
		if r.Failed, bad = expand(se.push.Failed, n, seen); bad == nil {
			r.InDoubt, bad = expand(se.push.InDoubt, n, seen)
		}
	}
	if bad == nil && r.Len() != n {
		bad = fmt.Errorf("%d of %d jobs reported", r.Len(), n)
	}
	if bad != nil {
		return consumer.ReportOf(n, fmt.Errorf("%w: %w", consumer.ErrInDoubt, err)), fmt.Errorf("%w: %w", ErrBadPushReport, bad)
	}
	return r, nil
}
