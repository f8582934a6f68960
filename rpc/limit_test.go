package rpc

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	gf "github.com/roadrunner-server/goridge/v3/pkg/frame"
)

// hugeHeader is a valid request frame header announcing a 4 GiB payload.
func hugeHeader() []byte {
	f := gf.NewFrame()
	f.WriteVersion(f.Header(), gf.Version1)
	f.WriteFlags(f.Header(), gf.CodecProto)
	f.WriteOptions(f.HeaderPtr(), 1, 9)
	f.WritePayloadLen(f.Header(), 0xFFFFFFFF)
	f.WriteCRC(f.Header())
	return f.Bytes()[:f.ReadHL(f.Header())*gf.WORD]
}

// TestHugeRequestHeaderEndsTheConnection: a request header that announces
// 4 GiB ends its connection at once, with no allocation of that size (it
// allocated 4 GiB before, and aborted the process where that failed); the
// server keeps serving other connections.
func TestHugeRequestHeaderEndsTheConnection(t *testing.T) {
	addr := startServer(t, NewServer(&fakeJobs{}, nil, nil), "tcp://127.0.0.1:0")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rc := dialRaw(t, addr)
	if _, err := rc.conn.Write(hugeHeader()); err != nil {
		t.Fatal(err)
	}
	if err := rc.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		var ne net.Error
		if !errors.As(err, &ne) || ne.Timeout() {
			t.Fatalf("read after a 4 GiB header = %v, want the connection closed", err)
		}
	}
	runtime.ReadMemStats(&after)
	if grew := int64(after.TotalAlloc) - int64(before.TotalAlloc); grew > 64<<20 {
		t.Fatalf("a 4 GiB header made the server allocate %d MiB", grew>>20)
	}
	if _, err := Dial(t.Context(), addr); err != nil {
		t.Fatalf("the server stopped serving: %v", err)
	}
}

// TestLimitConnPassesFramesSplitAnyhow: frames under the limit pass
// through byte for byte however the reads split them, and the header
// check follows frame boundaries (a header after a payload is checked).
func TestLimitConnPassesFramesSplitAnyhow(t *testing.T) {
	small := rpcFrame(gf.CodecJSON, 1, "jobs.List", []byte(`{}`))
	stream := append(append(bytes.Clone(small), small...), hugeHeader()...)
	for _, chunk := range []int{1, 3, 7, 12, 13, 64, len(stream)} {
		a, b := net.Pipe()
		go func() {
			for rest := stream; len(rest) > 0; {
				k := min(chunk, len(rest))
				if _, err := a.Write(rest[:k]); err != nil {
					return
				}
				rest = rest[k:]
			}
			_ = a.Close()
		}()
		c := &limitConn{Conn: b}
		got, err := io.ReadAll(c)
		_ = b.Close()
		if !errors.Is(err, ErrRequestTooLarge) {
			t.Fatalf("chunks of %d: err = %v, want ErrRequestTooLarge at the third header", chunk, err)
		}
		if len(got) < 2*len(small) || !bytes.Equal(got[:2*len(small)], stream[:2*len(small)]) {
			t.Fatalf("chunks of %d: passed %d bytes, want the two small frames intact first", chunk, len(got))
		}
	}
}
