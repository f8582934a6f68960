package main

import (
	"context"
	"os/exec"
	"testing"
	"time"
)

// TestMeasureFloorRunsEveryJob: the bare round trip drives real PHP echo
// workers through the handshake and n jobs, and reports the CPU it spent.
func TestMeasureFloorRunsEveryJob(t *testing.T) {
	if _, err := exec.LookPath("php"); err != nil {
		t.Fatalf("php is needed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, depth := range []int{1, 8} {
		// 1001 per worker: with 8 ahead, the last write is short.
		f, err := measureFloor(ctx, []string{"php", "../../examples/echo-worker.php"}, 2, 2003, depth)
		if err != nil {
			t.Fatalf("depth %d: %v", depth, err)
		}
		if f.jobs != 2002 {
			t.Errorf("depth %d: jobs = %d, want 2002 (1001 per worker)", depth, f.jobs)
		}
		if f.took <= 0 || f.user+f.sys <= 0 {
			t.Errorf("depth %d: took %s, CPU %s: nothing measured", depth, f.took, f.user+f.sys)
		}
	}
	if _, err := measureFloor(ctx, []string{"php", "../../examples/no-such-worker.php"}, 1, 10, 1); err == nil {
		t.Error("a worker that cannot start: no error")
	}
}
