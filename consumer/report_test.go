package consumer

import (
	"errors"
	"fmt"
	"testing"
)

func TestReportOf(t *testing.T) {
	doubt := fmt.Errorf("channel closed (%w)", ErrInDoubt)
	nack := errors.New("nacked")
	cases := []struct {
		name string
		err  error
		want string // confirmed failed in doubt
	}{
		{"nil: all confirmed", nil, "[0 1 2] [] []"},
		{"plain error: all failed", ErrClosed, "[] [0 1 2] []"},
		{"in-doubt error: all in doubt", fmt.Errorf("publish: %w", ErrInDoubt), "[] [] [0 1 2]"},
		{"batch error, wrapped", fmt.Errorf("jobs: %w", &BatchError{Failed: map[int]error{1: nack, 2: doubt, 7: nack}}), "[0] [1] [2]"},
	}
	for _, c := range cases {
		r := ReportOf(3, c.err)
		if got := fmt.Sprint(r.Confirmed, r.Failed, r.InDoubt); got != c.want {
			t.Errorf("%s: ReportOf = %s, want %s", c.name, got, c.want)
		}
		if r.Len() != 3 {
			t.Errorf("%s: report covers %d jobs, want 3", c.name, r.Len())
		}
	}
}

func TestStateOf(t *testing.T) {
	if StateOf(nil) != Confirmed || StateOf(errors.New("x")) != Failed || StateOf(fmt.Errorf("x: %w", ErrInDoubt)) != InDoubt {
		t.Fatal("StateOf does not classify nil, a plain error and an ErrInDoubt error")
	}
	if Confirmed.String() != "confirmed" || Failed.String() != "failed" || InDoubt.String() != "in doubt" {
		t.Fatal("PublishState names")
	}
}

func TestBatchErrorSaysFailedAndInDoubt(t *testing.T) {
	be := &BatchError{Failed: map[int]error{
		4: errors.New("nacked"),
		2: fmt.Errorf("confirm lost (%w)", ErrInDoubt),
		3: fmt.Errorf("confirm lost (%w)", ErrInDoubt),
	}}
	want := "consumer: 3 jobs of the batch not confirmed, 1 failed and 2 in doubt (job 2: confirm lost (" + ErrInDoubt.Error() + "))"
	if be.Error() != want {
		t.Errorf("Error() = %q, want %q", be.Error(), want)
	}
	if !errors.Is(be, ErrInDoubt) {
		t.Error("errors.Is does not find ErrInDoubt inside the batch error")
	}
}
