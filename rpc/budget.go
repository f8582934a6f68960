package rpc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultMaxConnections is how many connections a Server serves at once
// unless WithMaxConnections says otherwise.
const DefaultMaxConnections = 1024

// DefaultMaxInflightBytes is the request bytes a Server holds at once
// across all its connections unless WithMaxInflightBytes says otherwise:
// two requests of MaxRequestSize.
const DefaultMaxInflightBytes int64 = 2 * MaxRequestSize

// ErrServerBusy refuses a request that waited the frame timeout for room
// in the in-flight byte budget (WithMaxInflightBytes): other requests
// held it all the while. The client gets an error reply saying so, and
// the connection closes.
var ErrServerBusy = errors.New("rpc: server busy")

// FrameLimitError refuses a request frame that announces more than the
// frame limit: MaxRequestSize, or the whole in-flight byte budget when
// that is smaller. The server sends its text as the error reply (Op is
// "rpc: request") and closes the connection; the Client turns the reply
// back into a FrameLimitError with Op "push" for jobs.Push and
// jobs.PushBatch. It matches ErrRequestTooLarge with errors.Is.
type FrameLimitError struct {
	Op    string // what was too large: "rpc: request", "push", ...
	Size  int64  // bytes the frame's payload announced (or the client sent)
	Limit int64  // the frame limit in bytes
}

func (e *FrameLimitError) Error() string {
	return fmt.Sprintf("%s of %s exceeds the RPC frame limit of %s (%d > %d bytes)", e.Op, formatMiB(e.Size), formatMiB(e.Limit), e.Size, e.Limit)
}

// Is reports whether target is ErrRequestTooLarge.
func (e *FrameLimitError) Is(target error) bool { return target == ErrRequestTooLarge }

// parseFrameLimit reads a FrameLimitError back from its text (a server's
// error reply); ok is false when msg is not one.
func parseFrameLimit(msg string) (e *FrameLimitError, ok bool) {
	const mark = " exceeds the RPC frame limit of "
	i := strings.Index(msg, mark)
	open := strings.LastIndex(msg, "(")
	if i < 0 || open < i || !strings.HasSuffix(msg, " bytes)") {
		return nil, false
	}
	size, limit, found := strings.Cut(strings.TrimSuffix(msg[open+1:], " bytes)"), " > ")
	s, err1 := strconv.ParseInt(size, 10, 64)
	l, err2 := strconv.ParseInt(limit, 10, 64)
	if !found || err1 != nil || err2 != nil {
		return nil, false
	}
	op, _, _ := strings.Cut(msg[:i], " of ")
	return &FrameLimitError{Op: op, Size: s, Limit: l}, true
}

// formatMiB writes n bytes in MiB: "64 MiB" when whole, else "64.1 MiB".
func formatMiB(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// budget is the in-flight request bytes of a Server, shared by all its
// connections. A request frame reserves the payload size its header
// announces before its body is read, and gives it back when its reply has
// been written (or its connection ended).
type budget struct {
	limit int64

	mu      sync.Mutex
	used    int64
	changed chan struct{} // closed and replaced by release
}

func newBudget(limit int64) *budget {
	return &budget{limit: limit, changed: make(chan struct{})}
}

// acquire reserves n bytes (n <= limit), waiting while the others hold too
// much of the budget. It gives up after wait (0: never) with
// ErrServerBusy, or when ctx ends with its error.
func (b *budget) acquire(ctx context.Context, n int64, wait time.Duration) error {
	var expired <-chan time.Time
	for {
		b.mu.Lock()
		if b.used+n <= b.limit {
			b.used += n
			b.mu.Unlock()
			return nil
		}
		changed, used := b.changed, b.used
		b.mu.Unlock()
		if expired == nil && wait > 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-expired:
			return fmt.Errorf("%w: requests in progress hold %s of the rpc.max_inflight_bytes budget of %s and none finished within %v to make room for this one of %s; retry later",
				ErrServerBusy, formatMiB(used), formatMiB(b.limit), wait, formatMiB(n))
		}
	}
}

// tryAcquire reserves n bytes if they fit now.
func (b *budget) tryAcquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}

// release gives back n bytes and wakes the waiters.
func (b *budget) release(n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	b.used -= n
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// inUse is the bytes reserved now.
func (b *budget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
