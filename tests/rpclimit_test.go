package tests

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRPCStalledFrameEndsWithinJobsTimeout: the supervisor closes an RPC
// connection whose request frame stops half-way once jobs.timeout has
// passed (not the one-minute default), and keeps serving other clients.
func TestRPCStalledFrameEndsWithinJobsTimeout(t *testing.T) {
	requireTool(t, "php")
	cfg := memoryConfig(t, 1, filepath.Join(t.TempDir(), "jobs.log"))
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	yaml := strings.Replace(string(b), "  shutdown_timeout: 20s\n", "  shutdown_timeout: 20s\n  timeout: 700ms\n", 1)
	if yaml == string(b) {
		t.Fatal("the test config has no jobs.shutdown_timeout line to add jobs.timeout after")
	}
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startSupervisor(t, cfg)

	addr := strings.TrimPrefix(s.rpcAddr(), "tcp://")
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x01, 0x00, 0x00}); err != nil { // a frame header's first bytes
		t.Fatal(err)
	}
	start := time.Now()
	_ = conn.SetReadDeadline(start.Add(20 * time.Second))
	_, err = conn.Read(make([]byte, 1))
	took := time.Since(start)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the stalled connection was still open after %s (jobs.timeout 700ms)", took)
	}
	if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && !strings.Contains(errText(err), "reset") {
		t.Fatalf("read = %v, want the server to close the connection", err)
	}
	if took < 500*time.Millisecond || took > 10*time.Second {
		t.Errorf("closed after %s, want about jobs.timeout (700ms)", took)
	}
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked >= 1 })
}

// errText is err's text, or "" for nil.
func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
