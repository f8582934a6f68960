package pipeline

import "errors"

// TEMPORARY until pool/errors.go lands.
var (
	tmpErrNoWorker = errors.New("pool: no worker")
	tmpErrClosed   = errors.New("pool: closed")
)
