package tests

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestCLISaysWhatItDid: pause, resume and destroy print the pipelines they
// acted on; push --count prints the rate; a push to an unknown pipeline
// names the pipelines that exist.
func TestCLISaysWhatItDid(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	s := startSupervisor(t, memoryConfig(t, 1, log))

	if out := s.mustCLI("jobs", "pause", "default", "default"); strings.TrimSpace(out) != "paused: default" {
		t.Errorf("jobs pause printed %q, want \"paused: default\"", out)
	}
	if out := s.mustCLI("jobs", "resume", "default"); strings.TrimSpace(out) != "resumed: default" {
		t.Errorf("jobs resume printed %q, want \"resumed: default\"", out)
	}

	out := s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x", "--count", "20", "--batch", "5")
	if !regexp.MustCompile(`^pushed 20 jobs to default: 20 confirmed in \S+ \([0-9]+ jobs/s\)\n$`).MatchString(out) {
		t.Errorf("push --count 20 printed %q, want the counts and the rate", out)
	}

	out, code := s.cli("push", "--pipeline", "defualt", "--job", "ack", "--payload", "x")
	if code == 0 || !strings.Contains(out, `unknown pipeline "defualt" (pipelines: default)`) {
		t.Errorf("push to a misspelt pipeline: exit %d %q, want the existing pipelines listed", code, out)
	}
	out, code = s.cli("jobs", "pause", "defualt")
	if code == 0 || !strings.Contains(out, `unknown pipeline "defualt" (pipelines: default)`) {
		t.Errorf("pause of a misspelt pipeline: exit %d %q, want the existing pipelines listed", code, out)
	}

	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 20 })
	if out := s.mustCLI("jobs", "destroy", "default"); strings.TrimSpace(out) != "destroyed: default" {
		t.Errorf("jobs destroy printed %q, want \"destroyed: default\"", out)
	}
	out, code = s.cli("push", "--pipeline", "default", "--job", "ack", "--payload", "x")
	if code == 0 || !strings.Contains(out, `unknown pipeline "default" (there are no pipelines)`) {
		t.Errorf("push after destroying the last pipeline: exit %d %q", code, out)
	}
}
