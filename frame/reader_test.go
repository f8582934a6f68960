package frame

import (
	"bytes"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

func read(t *testing.T, b []byte) (Frame, error) {
	t.Helper()
	return NewReader(bytes.NewReader(b)).ReadFrame()
}

// withCRC recomputes the header CRC after a test has edited header bytes.
func withCRC(b []byte) []byte {
	gf.From(b[:12], nil).WriteCRC(b[:12])
	return b
}

func TestReaderSequence(t *testing.T) {
	var stream []byte
	stream = append(stream, EncodeControl(0, PidPayload(77))...)
	stream = append(stream, EncodeReply(Payload{Context: []byte("ctx"), Body: []byte("body")})...)
	stream = append(stream, EncodeError([]byte("boom"))...)
	r := NewReader(bytes.NewReader(stream))

	f, err := r.ReadFrame()
	if err != nil || f.Flags != FlagControl {
		t.Fatalf("pid frame: %+v %v", f, err)
	}
	if pid, err := ParsePid(f.Payload); err != nil || pid != 77 {
		t.Fatalf("ParsePid = %d, %v", pid, err)
	}
	f, err = r.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	pl, err := SplitReply(f)
	if err != nil || string(pl.Context) != "ctx" || string(pl.Body) != "body" {
		t.Fatalf("reply: %q %q %v", pl.Context, pl.Body, err)
	}
	f, err = r.ReadFrame()
	if err != nil || f.Flags&FlagError == 0 || string(f.Payload) != "boom" {
		t.Fatalf("error frame: %+v %v", f, err)
	}
	if _, err = r.ReadFrame(); !errors.Is(err, io.EOF) {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestReaderErrors(t *testing.T) {
	good := EncodeReply(Payload{Context: []byte("c"), Body: []byte("hello world")})
	cases := []struct {
		name     string
		in       []byte
		want     error
		contains string
	}{
		{"echo before frame", append([]byte("Hello from my worker!\n"), good...), ErrNotFrame, "Hello from my worker!"},
		{"php could not open", []byte("Could not open input file: /app/wrker.php\n"), ErrBadCommand, "/app/wrker.php"},
		{"short garbage then eof", []byte("oops\n"), ErrNotFrame, "oops"},
		{"payload past end", good[:len(good)-4], ErrTruncated, "ended after"},
		{"options past end", good[:14], ErrTruncated, "options"},
		{"header length 2", withCRC(append([]byte{0x12}, good[1:]...)), ErrBadHeader, "header length 2"},
		{"header length 15", withCRC(append([]byte{0x1f}, good[1:]...)), ErrBadHeader, "header length 15"},
		{"version 2", withCRC(append([]byte{0x24}, good[1:]...)), ErrBadHeader, "version 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := read(t, c.in)
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !strings.Contains(err.Error(), c.contains) {
				t.Fatalf("err %q does not mention %q", err, c.contains)
			}
		})
	}
}

func TestReaderHugeLengthDoesNotAllocateIt(t *testing.T) {
	b := AppendFrame(nil, 0, []uint32{0}, []byte("tiny"))
	b[2], b[3], b[4], b[5] = 0xff, 0xff, 0xff, 0xf0 // claims ~4 GiB
	withCRC(b)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := read(t, b)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 8<<20 {
		t.Fatalf("reader allocated %d bytes for a 4-byte payload", grew)
	}
}

func TestReaderLargePayload(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 300_000) // 4.8 MB, past the exact-alloc size
	f, err := read(t, EncodeReply(Payload{Body: body}))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(f.Payload, body) {
		t.Fatalf("payload differs (%d bytes, want %d)", len(f.Payload), len(body))
	}
}

// A worker that prints garbage and keeps its stdout open: the error comes
// back within the dump timeout and shows what it printed after the first
// 12 bytes too.
func TestReaderDumpOnLivePipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if _, err := pw.WriteString("var_dump: array(1) { [0]=> int(42) }\n"); err != nil {
		t.Fatal(err)
	}
	r := NewReader(pr)
	r.DumpTimeout = 50 * time.Millisecond
	start := time.Now()
	_, err = r.ReadFrame()
	if !errors.Is(err, ErrNotFrame) {
		t.Fatalf("err = %v, want ErrNotFrame", err)
	}
	if !strings.Contains(err.Error(), "[0]=> int(42)") {
		t.Fatalf("error does not show the whole output: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("ReadFrame took %v with a live pipe", d)
	}
}

func TestSplitReply(t *testing.T) {
	ok := Frame{Options: []uint32{3}, Payload: []byte("ctxbody")}
	pl, err := SplitReply(ok)
	if err != nil || string(pl.Context) != "ctx" || string(pl.Body) != "body" {
		t.Fatalf("SplitReply = %q %q %v", pl.Context, pl.Body, err)
	}
	cases := []struct {
		name string
		f    Frame
		want error
	}{
		{"no options", Frame{Payload: []byte("x")}, ErrBadOptions},
		{"two options", Frame{Options: []uint32{1, 2}, Payload: []byte("xx")}, ErrBadOptions},
		{"offset past payload", Frame{Options: []uint32{10}, Payload: []byte("short")}, ErrBadOffset},
		{"stream", Frame{Stream: StreamBit, Options: []uint32{0}}, ErrStream},
	}
	for _, c := range cases {
		if _, err := SplitReply(c.f); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestControlPayloads(t *testing.T) {
	if string(PidPayload(123)) != `{"pid":123}` {
		t.Fatalf("PidPayload = %s", PidPayload(123))
	}
	for _, bad := range []string{`{"pid":0}`, `{"pid":-3}`, `{}`, `nope`} {
		if _, err := ParsePid([]byte(bad)); !errors.Is(err, ErrHandshake) {
			t.Errorf("ParsePid(%s) = %v, want ErrHandshake", bad, err)
		}
	}
	if !IsStop(StopPayload()) || !IsStop([]byte(`{ "stop" : true }`)) || IsStop([]byte(`{"pid":1}`)) {
		t.Fatal("IsStop misjudges")
	}
	if !IsStopReply(Payload{Context: []byte(`{"stop":true}`)}) {
		t.Fatal("stop reply not recognised")
	}
	if IsStopReply(Payload{Context: []byte(`{"stop":true}`), Body: []byte("x")}) {
		t.Fatal("a reply with a body is not a stop request")
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, v := range goldenVectors() {
		f.Add(encodeVector(v))
	}
	f.Add([]byte("Could not open input file: x.php"))
	f.Add([]byte{0x14, 0, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data))
		for range 4 {
			fr, err := r.ReadFrame()
			if err != nil {
				return
			}
			if fr.Flags&FlagError == 0 && fr.Flags&FlagControl == 0 {
				_, _ = SplitReply(fr)
			}
		}
	})
}
