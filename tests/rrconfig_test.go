package tests

import (
	"bytes"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runValidate runs `supervisor validate -c file` and returns its exit
// code, stdout and stderr.
func runValidate(t *testing.T, file string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(testEnv.bin, "validate", "-c", file)
	cmd.Dir = testEnv.repoRoot
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

// TestValidateRoadRunnerConfigs: RoadRunner-style configs from the corpus
// validate through the binary, printing what is ignored as warnings;
// named pools validate (their workers counted together); drivers not
// shipped fail with exit code 1 naming them.
func TestValidateRoadRunnerConfigs(t *testing.T) {
	corpus := func(name string) string {
		return filepath.Join(testEnv.repoRoot, "config", "testdata", "roadrunner", name)
	}
	for _, tc := range []struct {
		file     string
		code     int
		stdout   string   // a line of stdout
		stderr   []string // lines of stderr, in order
		noStderr string   // must not appear
	}{
		{
			file:   "amqp-v2.rr.yaml",
			stdout: "amqp-v2.rr.yaml: ok (3 pipelines, 2 consumed, 10 workers)",
			stderr: []string{
				"warning: server.relay_timeout: ignored: workers talk over pipes, which have no relay timeout (line 11)",
				"warning: jobs.num_pollers: ignored: each pipeline fetches only as many jobs as it has free slots (concurrency) (line 22)",
			},
			noStderr: "logs.mode",
		},
		{
			file:   "kv-and-http.rr.yaml",
			stdout: "kv-and-http.rr.yaml: ok (1 pipelines, 1 consumed, 2 workers)",
			stderr: []string{
				"warning: http: ignored: section of RoadRunner's http plugin, which Pipevisor does not run (line 15)",
				"warning: kv: ignored: section of RoadRunner's kv plugin, which Pipevisor does not run (line 20)",
			},
		},
		{
			file:   "pools.rr.yaml",
			stdout: "pools.rr.yaml: ok (2 pipelines, 2 consumed, 6 workers)",
			stderr: []string{
				"warning: jobs.pipeline_size: ignored: there is no shared priority queue to bound; each pipeline holds at most its prefetch (line 17)",
			},
		},
		{
			file: "other-drivers.rr.yaml",
			code: 1,
			stderr: []string{
				"  jobs.pipelines.tube.driver: RoadRunner's beanstalk driver is not shipped with Pipevisor (drivers: memory, boltdb, amqp, kafka, sqs) (line 60)",
				"  jobs.pipelines.subject.driver: RoadRunner's nats driver is not shipped with Pipevisor (drivers: memory, boltdb, amqp, kafka, sqs) (line 91)",
			},
		},
	} {
		t.Run(tc.file, func(t *testing.T) {
			code, stdout, stderr := runValidate(t, corpus(tc.file))
			if code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, stdout, stderr)
			}
			if tc.stdout != "" && !strings.Contains(stdout, tc.stdout) {
				t.Errorf("stdout %q lacks %q", stdout, tc.stdout)
			}
			rest := stderr
			for _, line := range tc.stderr {
				i := strings.Index(rest, line+"\n")
				if i < 0 {
					t.Fatalf("stderr lacks (in order) %q:\n%s", line, stderr)
				}
				rest = rest[i+len(line):]
			}
			if tc.noStderr != "" && strings.Contains(stderr, tc.noStderr) {
				t.Errorf("stderr mentions %q:\n%s", tc.noStderr, stderr)
			}
		})
	}
}
