package pipeline

import (
	"errors"
	"fmt"

	"github.com/pipevisor/pipevisor/frame"
)

// errNacked is the run span's error for a worker that failed its job (NACK
// or the legacy ERROR reply type).
var errNacked = errors.New("the worker failed the job")

// runErr is the failure of a run, for its span: err, or errNacked (with
// the worker's message) for a NACK or legacy error reply; nil for a run
// that succeeded or was requeued by the worker.
func runErr(reply frame.Reply, err error) error {
	if err != nil {
		return err
	}
	if reply.Type == frame.ReplyNack || reply.Type == frame.ReplyError {
		if reply.Data.Message != "" {
			return fmt.Errorf("%w: %s", errNacked, reply.Data.Message)
		}
		return errNacked
	}
	return nil
}
