package consumer

import "errors"

// PublishState is what became of one published job.
type PublishState uint8

const (
	// Confirmed: the broker confirmed the job; it is on the broker.
	Confirmed PublishState = iota + 1
	// Failed: the broker refused the job or it was never sent; it is
	// certainly not on the broker, and publishing it again is safe.
	Failed
	// InDoubt: the job was sent but its confirm was lost; it may be on
	// the broker, and publishing it again may duplicate it.
	InDoubt
)

// String returns the name used in messages: "confirmed", "failed" or
// "in doubt".
func (s PublishState) String() string {
	switch s {
	case Confirmed:
		return "confirmed"
	case Failed:
		return "failed"
	case InDoubt:
		return "in doubt"
	default:
		return "unknown"
	}
}

// StateOf classifies the error of one job: nil is Confirmed, an error
// wrapping ErrInDoubt is InDoubt, any other error is Failed.
func StateOf(err error) PublishState {
	switch {
	case err == nil:
		return Confirmed
	case errors.Is(err, ErrInDoubt):
		return InDoubt
	default:
		return Failed
	}
}

// PublishReport sorts the jobs of one publish of n jobs by what became of
// them: each index in [0, n) is in exactly one of the lists, in ascending
// order.
type PublishReport struct {
	Confirmed []int
	Failed    []int
	InDoubt   []int
}

// ReportOf reports the n jobs of a publish that returned err (the error of
// Publisher.Publish, or one wrapping it): nil means all confirmed; a
// *BatchError names the jobs not confirmed (indexes outside [0, n) are
// ignored); any other error applies to every job (StateOf).
func ReportOf(n int, err error) PublishReport {
	var r PublishReport
	var be *BatchError
	if err != nil && !errors.As(err, &be) {
		all := make([]int, n)
		for i := range all {
			all[i] = i
		}
		if StateOf(err) == InDoubt {
			r.InDoubt = all
		} else {
			r.Failed = all
		}
		return r
	}
	for i := 0; i < n; i++ {
		var cause error
		if be != nil {
			cause = be.Failed[i]
		}
		r.add(i, StateOf(cause))
	}
	return r
}

// add puts index i in the list of state s.
func (r *PublishReport) add(i int, s PublishState) {
	switch s {
	case Confirmed:
		r.Confirmed = append(r.Confirmed, i)
	case InDoubt:
		r.InDoubt = append(r.InDoubt, i)
	default:
		r.Failed = append(r.Failed, i)
	}
}

// Len is the number of jobs the report covers.
func (r PublishReport) Len() int { return len(r.Confirmed) + len(r.Failed) + len(r.InDoubt) }
