package benchkit

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	s := []time.Duration{1 * time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 4 * time.Millisecond, 5 * time.Millisecond}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{0, time.Millisecond}, {0.5, 3 * time.Millisecond}, {0.99, 4 * time.Millisecond}, {1, 5 * time.Millisecond}} {
		if got := Percentile(s, c.p); got != c.want {
			t.Errorf("Percentile(%v) = %s, want %s", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 0.5); got != 0 {
		t.Errorf("Percentile of no samples = %s, want 0", got)
	}
}

func TestProcCPUMemoryAndStop(t *testing.T) {
	p, err := StartProc(exec.Command("sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 60"))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	deadline := time.Now().Add(10 * time.Second)
	for p.CPU() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("CPU stayed 0 for a busy process")
		}
		time.Sleep(10 * time.Millisecond)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		u, _ := p.UserSys()
		if u > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("UserSys: user time stayed 0 for a busy shell loop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if kb := p.MemKB("VmRSS"); kb <= 0 {
		t.Errorf("MemKB(VmRSS) = %d, want > 0", kb)
	}
	if kb := p.MemKB("NoSuchKey"); kb != -1 {
		t.Errorf("MemKB(NoSuchKey) = %d, want -1", kb)
	}
	p.Stop()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Exited not closed after Stop")
	}
	p.Stop() // a second Stop returns at once
}

func TestStartSupervisorExited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := StartSupervisor(ctx, Config{Bin: "false", Dir: t.TempDir(), Name: "x", Command: "true"})
	if !errors.Is(err, ErrExited) {
		t.Fatalf("StartSupervisor with a binary that exits: %v, want ErrExited", err)
	}
}

func TestPollGap(t *testing.T) {
	ms := time.Millisecond
	for _, c := range []struct {
		remaining, done uint64
		took, want      time.Duration
	}{
		{100000, 0, 10 * ms, 2 * ms},      // no progress yet: poll
		{100000, 1000, 0, 2 * ms},         // no interval: poll
		{200000, 10000, 10 * ms, 50 * ms}, // 200 ms to go: capped
		{90000, 10000, 10 * ms, 45 * ms},  // 90 ms to go: half of it
		{6000, 10000, 10 * ms, 3 * ms},    // 6 ms to go: half of it
		{1000, 10000, 10 * ms, 2 * ms},    // 1 ms to go: never below poll
	} {
		if got := pollGap(c.remaining, c.done, c.took, 2*ms); got != c.want {
			t.Errorf("pollGap(%d, %d, %s) = %s, want %s", c.remaining, c.done, c.took, got, c.want)
		}
	}
}
