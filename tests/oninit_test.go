package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// onInitConfig is a memory-driver config whose server.on_init runs
// command with INIT_OUT=out in its environment.
func onInitConfig(t *testing.T, command, out string, exitOnError bool) string {
	t.Helper()
	exit := "false"
	if exitOnError {
		exit = "true"
	}
	return writeConfig(t, `version: "3"
rpc:
  listen: tcp://`+freeAddr(t)+`
server:
  command: "`+behaveWorker+`"
  on_init:
    command: '`+command+`'
    exec_timeout: 20s
    exit_on_error: `+exit+`
    env:
      INIT_OUT: "`+out+`"
jobs:
  pool: {num_workers: 1, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: ["default"]
  pipelines:
    default: {driver: memory}
`)
}

// server.on_init runs once before the workers start; with exit_on_error a
// failing command stops startup with exit 1 and says why, without it the
// supervisor starts anyway.
func TestServerOnInit(t *testing.T) {
	requireTool(t, "php")
	dir := t.TempDir()
	out := filepath.Join(dir, "init.out")
	s := startSupervisor(t, onInitConfig(t, `php -r file_put_contents(getenv("INIT_OUT"),"ran",FILE_APPEND);`, out, true))
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if b, err := os.ReadFile(out); err != nil || string(b) != "ran" {
		t.Fatalf("on_init output %q, %v; want it run once", b, err)
	}
	if code := s.terminate(); code != 0 {
		t.Fatalf("exit %d", code)
	}

	failing := onInitConfig(t, `php -r exit(3);`, out, true)
	msg, code := runCLI(t, "serve", "-c", failing)
	if code != 1 || !strings.Contains(msg, "server.on_init") || !strings.Contains(msg, "exit status 3") {
		t.Fatalf("serve with a failing on_init and exit_on_error: exit %d, %q", code, msg)
	}

	s = startSupervisor(t, onInitConfig(t, `php -r exit(3);`, out, false))
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
}
