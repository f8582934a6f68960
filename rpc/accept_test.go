package rpc

import (
	"context"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// flakyListener fails its first n Accepts with err, then accepts.
type flakyListener struct {
	net.Listener
	n   atomic.Int32
	err error
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.n.Add(-1) >= 0 {
		return nil, l.err
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfFilesKeepsServing: accept failing because the process
// is out of file descriptors (or a connection aborted early) is waited
// out; the server serves the next connection instead of returning.
func TestAcceptOutOfFilesKeepsServing(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ECONNABORTED} {
		t.Run(errno.Error(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ln, err := Listen(ctx, "tcp://127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			fl := &flakyListener{Listener: ln, err: &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", errno)}}
			fl.n.Store(3)
			done := make(chan error, 1)
			go func() { done <- NewServer(&fakeJobs{}, nil, nil).ServeListener(ctx, fl) }()

			c := dialClient(t, "tcp://"+ln.Addr().String())
			if _, err := c.List(testCtx(t)); err != nil {
				t.Fatalf("a call after %v on accept: %v", errno, err)
			}
			select {
			case err := <-done:
				t.Fatalf("ServeListener returned %v after %v on accept", err, errno)
			default:
			}
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("ServeListener = %v after cancel", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("ServeListener did not return after cancel")
			}
		})
	}
}
