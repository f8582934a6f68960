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
	f, err := measureFloor(ctx, []string{"php", "../../examples/echo-worker.php"}, 2, 2001)
	if err != nil {
		t.Fatal(err)
	}
	if f.jobs != 2000 {
		t.Errorf("jobs = %d, want 2000 (1000 per worker)", f.jobs)
	}
	if f.took <= 0 || f.user+f.sys <= 0 {
		t.Errorf("took %s, CPU %s: nothing measured", f.took, f.user+f.sys)
	}
	if _, err := measureFloor(ctx, []string{"php", "../../examples/no-such-worker.php"}, 1, 10); err == nil {
		t.Error("a worker that cannot start: no error")
	}
}
