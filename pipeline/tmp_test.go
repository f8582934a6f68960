package pipeline

import (
	"errors"
	"fmt"
)

func jobErr(msg string) error { return errors.New("job: " + msg) }
func execTimeoutErr() error   { return errors.New("exec timeout") }
func crashErr() error         { return fmt.Errorf("worker 12: crashed") }
func noWorkerErr() error      { return tmpErrNoWorker }
func poolClosedErr() error    { return tmpErrClosed }
