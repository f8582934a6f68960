package pool

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// stdoutPipe is the read end of a worker's stdout.
//
// A job is one write to the worker and one read of its reply, and the
// reply comes within microseconds. Read through Go's poller, that read
// costs a read(2) that finds nothing, a park of the goroutine, an
// epoll_wait and a second read(2), plus the scheduler's hand-offs: that
// was the largest cost per job. So the pipe is read in blocking mode: one
// read(2) that sleeps in the kernel until the reply is there (the thread
// is blocked meanwhile; Go's runtime runs other goroutines on other
// threads).
//
// A blocking read cannot be cut short by a deadline. Interrupting it (a
// deadline passing, the job's ctx ending, the worker exiting with a
// grandchild holding its stdout) sets tripped, opens a write end of the
// same pipe (a separate open file description, non-blocking, through
// /proc/self/fd), writes one byte there and closes it: the read returns
// and reports os.ErrDeadlineExceeded, like an *os.File read past its
// deadline. A tripped pipe stays tripped: a byte of ours may be in the
// stream, so the worker must not run another job (the pool retires it).
//
// The pool holds no write end between interruptions, so a read ends with
// EOF as soon as the worker, and whatever inherited its stdout, closed
// it: a worker that closes its stdout and lives on fails its job at once,
// without waiting for exec_ttl. Where /proc is not available,
// newStdoutPipe falls back to the poller (the *os.File and its own
// deadlines).
type stdoutPipe struct {
	f *os.File // blocking read end (or pollable, when blocking is false)

	blocking bool
	rfd      int // f's descriptor, to open a write end through /proc/self/fd
	tripped  atomic.Bool

	mu     sync.Mutex
	closed bool
	timer  *time.Timer // trips the pipe at the read deadline; nil if none armed
	gen    uint64      // bumped whenever the deadline changes: a stale timer does nothing
}

// newStdoutPipe takes over r, the read end of a worker's stdout (not yet
// read from). It never fails: when a write end cannot be opened through
// /proc/self/fd (or with poll set) it uses the poller.
func newStdoutPipe(r *os.File, poll bool) *stdoutPipe {
	p := &stdoutPipe{f: r, rfd: -1}
	if poll {
		return p
	}
	sc, err := r.SyscallConn()
	if err != nil {
		return p
	}
	var fd uintptr
	if sc.Control(func(x uintptr) { fd = x }) != nil {
		return p
	}
	// Only interruptions need a write end: check that one can be opened.
	wake, err := openWake(int(fd))
	if err != nil {
		return p
	}
	_ = syscall.Close(wake)
	p.rfd, p.blocking = int(fd), true
	_ = r.Fd() // switches r to blocking mode: reads bypass the poller
	return p
}

// openWake opens a new, non-blocking write end of the pipe whose read end
// is rfd; the caller closes it.
func openWake(rfd int) (int, error) {
	return syscall.Open(fmt.Sprintf("/proc/self/fd/%d", rfd), syscall.O_WRONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
}

// Read reads from the pipe. Once the pipe has tripped it returns
// os.ErrDeadlineExceeded and no data, also for a read that was already
// waiting.
func (p *stdoutPipe) Read(b []byte) (int, error) {
	if !p.blocking {
		return p.f.Read(b)
	}
	if p.tripped.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	n, err := p.f.Read(b)
	if p.tripped.Load() {
		return 0, os.ErrDeadlineExceeded
	}
	return n, err
}

// SetReadDeadline makes reads fail with os.ErrDeadlineExceeded from t on;
// the zero time removes the deadline. In blocking mode a deadline that
// passes trips the pipe for good; removing a deadline before it passed
// leaves the pipe as it was.
func (p *stdoutPipe) SetReadDeadline(t time.Time) error {
	if !p.blocking {
		return p.f.SetReadDeadline(t)
	}
	if !t.IsZero() && !time.Now().Before(t) {
		p.trip()
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	if p.timer != nil {
		p.timer.Stop() // if it already fired, gen makes its trip a no-op
		p.timer = nil
	}
	if !t.IsZero() && !p.closed {
		gen := p.gen
		p.timer = time.AfterFunc(time.Until(t), func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.gen == gen {
				p.tripLocked()
			}
		})
	}
	return nil
}

// Tripped reports whether a read was interrupted for good (never in
// poller mode, where the *os.File's deadline can be reset).
func (p *stdoutPipe) Tripped() bool { return p.tripped.Load() }

// trip interrupts the pending read, if any, and every later one.
func (p *stdoutPipe) trip() {
	if !p.blocking {
		_ = p.f.SetReadDeadline(time.Unix(1, 0))
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tripLocked()
}

// tripLocked is trip in blocking mode, with p.mu held.
func (p *stdoutPipe) tripLocked() {
	if p.tripped.Swap(true) || p.closed {
		return
	}
	fd, err := openWake(p.rfd)
	if err != nil {
		return
	}
	// EAGAIN means the pipe is full: a read returns at once anyway.
	_, _ = syscall.Write(fd, []byte{0})
	_ = syscall.Close(fd)
}

// Close closes the read end and stops the deadline timer.
// No read may be running.
func (p *stdoutPipe) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
	return p.f.Close()
}
