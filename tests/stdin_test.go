package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A PHP job that reads its stdin (fgets(STDIN), php://stdin, a `cat` child
// inheriting fd 0) reads end of file, not the supervisor's frames: the
// worker answers it and goes on with the next jobs.
func TestPHPJobsReadingStdinSeeEndOfFile(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	s.mustCLI("push", "--pipeline", "default", "--job", "read-stdin", "--payload", "x", "--count", "3")
	st := s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked >= 3 })
	if st.Acked != 3 || st.Dead != 0 || st.Retried != 0 {
		t.Fatalf("want 3 acked, 0 dead, 0 retried; got %+v", st)
	}
	var seen []string
	for _, l := range readLines(t, log) {
		if f := strings.Fields(l); f[0] == "stdin" {
			seen = append(seen, strings.Join(f[2:], " "))
		}
	}
	if strings.Join(seen, "|") != "false '' NULL|false '' NULL|false '' NULL" {
		t.Fatalf("the jobs read from stdin %q, want end of file (false '' NULL) three times", seen)
	}
}
