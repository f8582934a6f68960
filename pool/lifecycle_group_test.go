package pool

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/internal/fakeworker"
)

// TestStopLeavesNoProcessOfTheWorkersGroup: a worker with a background
// child (php's exec("... &"), a Python multiprocessing helper) that exits
// cleanly on the stop frame takes the child with it (it lived on after
// Stop before).
func TestStopLeavesNoProcessOfTheWorkersGroup(t *testing.T) {
	cfg := fakeConfig("ack", 1)
	cmd := strings.Join(fakeworker.HelperCommand(), " ")
	cfg.Command = []string{"/bin/sh", "-c", "sleep 300 </dev/null >/dev/null 2>&1 & exec " + cmd}
	p, err := New(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	pgid := p.Workers()[0].Pid
	if err := p.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	var left []string
	for deadline := time.Now().Add(3 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		left = groupMembers(pgid)
		if len(left) == 0 || time.Now().After(deadline) {
			break
		}
	}
	if len(left) > 0 {
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		t.Fatalf("process group %d still has live members after Stop: %v", pgid, left)
	}
}

// groupMembers lists the live (not zombie) processes of group pgid as
// "pid cmdline".
func groupMembers(pgid int) []string {
	var left []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if g, _ := syscall.Getpgid(pid); g != pgid {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if f := strings.Fields(string(st[strings.LastIndexByte(string(st), ')')+1:])); len(f) > 0 && f[0] == "Z" {
			continue // killed, waiting for init to reap it
		}
		b, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		left = append(left, e.Name()+" "+strings.ReplaceAll(string(b), "\x00", " "))
	}
	return left
}
