package tests

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A PHP job that leaves a child process running does not hand it the
// worker's frame pipes (the php-client marks them close-on-exec): the child
// holds no pipe of the worker's but its stderr, and when the worker is
// killed the supervisor replaces it and runs the next job while the child
// still sleeps.
func TestPHPChildLeftRunningDoesNotHoldTheWorkersPipes(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "leave-child", "--payload", "x")
	var worker, child int
	deadline := time.Now().Add(30 * time.Second)
	for child == 0 {
		for _, l := range readLines(t, log) {
			f := strings.Fields(l)
			if f[0] == "start" && f[4] == "leave-child" {
				worker, _ = strconv.Atoi(f[3])
			}
			if f[0] == "child" {
				child, _ = strconv.Atoi(f[2])
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the leave-child job did not start its child")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { _ = syscall.Kill(child, syscall.SIGKILL) })
	// Until it has exec'd sleep the forked child still has every fd.
	for {
		if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child)); strings.HasPrefix(string(b), "sleep\x00") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the child %d did not exec sleep", child)
		}
		time.Sleep(time.Millisecond)
	}

	// The worker's frame pipes: its pipes other than its stderr (fd 1, 2)
	// and those it inherited from this test (through the supervisor).
	inherited := map[string]bool{}
	for _, target := range openFiles(t, os.Getpid()) {
		inherited[target] = true
	}
	workerFds := openFiles(t, worker)
	frames := map[string]bool{}
	for _, target := range workerFds {
		if strings.HasPrefix(target, "pipe:") && target != workerFds[2] && !inherited[target] {
			frames[target] = true
		}
	}
	if len(frames) != 2 {
		t.Fatalf("want the worker's 2 frame pipes besides stderr, got %v (fds %v)", frames, workerFds)
	}
	for fd, target := range openFiles(t, child) {
		if frames[target] {
			t.Errorf("the child holds the worker's frame pipe %s on fd %d", target, fd)
		}
	}

	if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x")
	st := s.waitStat("default", 20*time.Second, func(st pipelineStat) bool { return st.Acked >= 2 })
	if st.Acked != 2 || st.Dead != 0 {
		t.Fatalf("want 2 acked, 0 dead; got %+v", st)
	}
	if err := syscall.Kill(child, 0); err != nil {
		t.Fatalf("the child (sleep 60) ended before the worker was replaced (%s): %v", time.Since(killed), err)
	}
}

// openFiles maps the fds of a process to what they link to.
func openFiles(t *testing.T, pid int) map[int]string {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[int]string{}
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if target, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil {
			files[fd] = target
		}
	}
	return files
}
