package fakeworker

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/frame"
)

// session runs Run in a goroutine on in-memory pipes.
type session struct {
	t      *testing.T
	in     *io.PipeWriter
	r      *frame.Reader
	stderr *bytes.Buffer
	code   chan int
}

func start(t *testing.T, mode string) *session {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	s := &session{t: t, in: inW, r: frame.NewReader(outR), stderr: &bytes.Buffer{}, code: make(chan int, 1)}
	errR, errW := io.Pipe()
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(s.stderr, errR)
		close(done)
	}()
	go func() {
		code := Run(mode, inR, outW, errW)
		_ = outW.Close()
		_ = errW.Close()
		<-done
		s.code <- code
	}()
	t.Cleanup(func() {
		_ = inW.Close()
		_ = outR.Close()
		select {
		case <-s.code:
		case <-time.After(5 * time.Second):
			t.Error("fake worker did not exit")
		}
	})
	return s
}

func (s *session) write(b []byte) {
	s.t.Helper()
	if _, err := s.in.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

func (s *session) handshake() int {
	s.t.Helper()
	s.write(frame.EncodeControl(frame.FlagCodecJSON, frame.PidPayload(1)))
	f, err := s.r.ReadFrame()
	if err != nil {
		s.t.Fatal(err)
	}
	if f.Flags&frame.FlagControl == 0 {
		s.t.Fatalf("handshake reply flags %#x", f.Flags)
	}
	pid, err := frame.ParsePid(f.Payload)
	if err != nil {
		s.t.Fatal(err)
	}
	return pid
}

func (s *session) exec(ctx, body string) (frame.Frame, error) {
	s.t.Helper()
	s.write(frame.EncodeExec(frame.Payload{Context: []byte(ctx), Body: []byte(body)}))
	return s.r.ReadFrame()
}

func (s *session) wait() int {
	s.t.Helper()
	select {
	case c := <-s.code:
		s.code <- c
		return c
	case <-time.After(5 * time.Second):
		s.t.Fatal("worker did not exit")
		return -1
	}
}

func reply(t *testing.T, f frame.Frame, err error) frame.Payload {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := frame.SplitReply(f)
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

func TestEchoAndStop(t *testing.T) {
	s := start(t, "echo")
	if s.handshake() <= 0 {
		t.Fatal("no pid")
	}
	f, err := s.exec(`{"id":"1"}`, "hello")
	pl := reply(t, f, err)
	if string(pl.Context) != `{"id":"1"}` || string(pl.Body) != "hello" {
		t.Fatalf("echo = %q %q", pl.Context, pl.Body)
	}
	s.write(frame.EncodeControl(frame.FlagCodecJSON, frame.StopPayload()))
	if c := s.wait(); c != 0 {
		t.Fatalf("exit code %d after stop", c)
	}
}

func TestReplyModes(t *testing.T) {
	cases := []struct {
		mode, ctx, want string
	}{
		{"ack", `{}`, AckBody},
		{"nack-first", `{"headers":{"x-attempt":["1"]}}`, `"requeue":true`},
		{"nack-first", `{"headers":{"x-attempt":["2"]}}`, AckBody},
		{"die-after", `{}`, AckBody},
	}
	for _, c := range cases {
		s := start(t, c.mode)
		s.handshake()
		f, err := s.exec(c.ctx, "x")
		pl := reply(t, f, err)
		if !strings.Contains(string(pl.Body), c.want) {
			t.Errorf("%s: body %q, want %q", c.mode, pl.Body, c.want)
		}
	}
}

func TestFailureModes(t *testing.T) {
	t.Run("error-frame", func(t *testing.T) {
		s := start(t, "error-frame")
		s.handshake()
		f, err := s.exec(`{}`, "x")
		if err != nil || f.Flags&frame.FlagError == 0 {
			t.Fatalf("frame %+v err %v, want ERROR frame", f, err)
		}
	})
	t.Run("crash", func(t *testing.T) {
		s := start(t, "crash")
		s.handshake()
		if _, err := s.exec(`{}`, "x"); !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v, want EOF", err)
		}
		if c := s.wait(); c == 0 {
			t.Fatal("crash mode exited 0")
		}
		if !strings.Contains(s.stderr.String(), "Fatal error") {
			t.Fatalf("stderr = %q", s.stderr.String())
		}
	})
	t.Run("garbage", func(t *testing.T) {
		s := start(t, "garbage")
		s.handshake()
		s.r.DumpTimeout = 0
		if _, err := s.exec(`{}`, "x"); !errors.Is(err, frame.ErrNotFrame) {
			t.Fatalf("err = %v, want ErrNotFrame", err)
		}
	})
	t.Run("bad-crc", func(t *testing.T) {
		s := start(t, "bad-crc")
		s.handshake()
		if _, err := s.exec(`{}`, "x"); !errors.Is(err, frame.ErrNotFrame) {
			t.Fatalf("err = %v, want ErrNotFrame", err)
		}
	})
	t.Run("exit-on-boot", func(t *testing.T) {
		s := start(t, "exit-on-boot")
		if c := s.wait(); c == 0 {
			t.Fatal("exit-on-boot exited 0")
		}
	})
	t.Run("unknown mode", func(t *testing.T) {
		s := start(t, "no-such-mode")
		if c := s.wait(); c != 2 {
			t.Fatalf("exit code %d, want 2", c)
		}
	})
	t.Run("ask-stop", func(t *testing.T) {
		s := start(t, "ask-stop")
		s.handshake()
		f, err := s.exec(`{}`, "x")
		if pl := reply(t, f, err); !frame.IsStopReply(pl) {
			t.Fatalf("first reply %q %q is not a stop request", pl.Context, pl.Body)
		}
		if c := s.wait(); c != 0 {
			t.Fatalf("exit code %d after asking to stop, want 0", c)
		}
	})
	t.Run("crash-after", func(t *testing.T) {
		t.Setenv("FAKEWORKER_N", "2")
		s := start(t, "crash-after")
		s.handshake()
		f, err := s.exec(`{"id":"1"}`, "x")
		if pl := reply(t, f, err); string(pl.Body) != "x" {
			t.Fatalf("first reply %q, want the echo", pl.Body)
		}
		if _, err := s.exec(`{}`, "x"); !errors.Is(err, io.EOF) {
			t.Fatalf("err = %v, want EOF", err)
		}
		if c := s.wait(); c != 70 {
			t.Fatalf("exit code %d, want 70", c)
		}
	})
}

func TestDieAfter(t *testing.T) {
	t.Setenv("FAKEWORKER_N", "2")
	s := start(t, "die-after")
	s.handshake()
	for range 2 {
		f, err := s.exec(`{}`, "x")
		reply(t, f, err)
	}
	if c := s.wait(); c != 0 {
		t.Fatalf("exit code %d", c)
	}
}
