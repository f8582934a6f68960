package config

import (
	"slices"
	"testing"
)

func TestEnvExpansion(t *testing.T) {
	t.Setenv("PV_WORKERS", "3")
	t.Setenv("PV_HOST", "127.0.0.1")
	t.Setenv("PV_EMPTY", "")
	t.Setenv("PV_QUEUE_PRIO", "7")
	t.Setenv("PV_TRICKY", "a: b # not a comment")
	unsetEnv(t, "PV_UNSET")

	r, err := Parse([]byte(`
# ${PV_UNSET} in a comment is left alone
version: "3"
rpc:
  listen: tcp://${PV_HOST}:${PV_PORT:-7001}
server:
  command: php ${PV_SCRIPT:-worker.php} --literal=$${PV_HOST} $HOME
  env:
    QUOTED: "${PV_WORKERS}"
    EMPTY_DEFAULT: ${PV_EMPTY:-fallback}
    UNSET_EMPTY: ${PV_UNSET:-}
    TRICKY: ${PV_TRICKY}
    MIXED: ${PV_HOST}-${PV_WORKERS}-x
jobs:
  pool:
    num_workers: ${PV_WORKERS}
  pipelines:
    default:
      driver: memory
      config:
        priority: ${PV_QUEUE_PRIO}
amqp:
  addr: amqp://${PV_HOST}:5672/
`))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if r.RPC.Listen != "tcp://127.0.0.1:7001" {
		t.Errorf("rpc.listen = %q", r.RPC.Listen)
	}
	if want := []string{"php", "worker.php", "--literal=${PV_HOST}", "$HOME"}; !slices.Equal(r.Server.Command, want) {
		t.Errorf("server.command = %q, want %q", r.Server.Command, want)
	}
	wantEnv := map[string]string{
		"QUOTED":        "3",
		"EMPTY_DEFAULT": "fallback",
		"UNSET_EMPTY":   "",
		"TRICKY":        "a: b # not a comment",
		"MIXED":         "127.0.0.1-3-x",
	}
	for k, v := range wantEnv {
		if got, ok := r.Server.Env[k]; !ok || got != v {
			t.Errorf("server.env.%s = %q (set %v), want %q", k, got, ok, v)
		}
	}
	if r.Jobs.Pool.NumWorkers != 3 {
		t.Errorf("num_workers = %d, want 3", r.Jobs.Pool.NumWorkers)
	}
	if p := r.Jobs.Pipelines["default"]; p.Priority != 7 || p.Concurrency != 3 {
		t.Errorf("pipeline = %+v", p)
	}
	if r.AMQP.Addr != "amqp://127.0.0.1:5672/" {
		t.Errorf("amqp section = %+v", r.AMQP)
	}
}

func TestEnvExpansionKeepsQuotedValuesStrings(t *testing.T) {
	t.Setenv("PV_NUM", "12")
	// A quoted reference stays a string, so it can not fill an int.
	_, err := Parse([]byte("version: \"3\"\nserver: {command: w}\njobs:\n  pool:\n    num_workers: \"${PV_NUM}\"\n"))
	want := []string{`jobs.pool.num_workers: cannot unmarshal !!str "12" into int (line 5)`}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Fatalf("errors = %q, want %q", got, want)
	}
}

func TestEnvExpansionErrorsAreAllReported(t *testing.T) {
	unsetEnv(t, "PV_A")
	unsetEnv(t, "PV_B")
	_, err := Parse([]byte(`version: "3"
server:
  command: ${PV_A} ${PV_B}
jobs:
  pool:
    num_workers: ${PV_B}
`))
	want := []string{
		"server.command: environment variable PV_A is not set (write ${PV_A:-} to allow an empty value); " +
			"environment variable PV_B is not set (write ${PV_B:-} to allow an empty value) (line 3)",
		"jobs.pool.num_workers: environment variable PV_B is not set (write ${PV_B:-} to allow an empty value) (line 6)",
	}
	if got := errorStrings(err); !slices.Equal(got, want) {
		t.Fatalf("errors:\n%q\nwant:\n%q", got, want)
	}
}

func TestExpandString(t *testing.T) {
	env := map[string]string{"A": "1", "E": ""}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		in, out string
		bad     bool
	}{
		{in: "plain", out: "plain"},
		{in: "${A}", out: "1"},
		{in: "x${A}y${A}", out: "x1y1"},
		{in: "${E:-d}", out: "d"},
		{in: "${E}", out: ""},
		{in: "${U:-a:-b}", out: "a:-b"},
		{in: "$${A}", out: "${A}"},
		{in: "$A ${A}", out: "$A 1"},
		{in: "${U}", bad: true},
		{in: "${}", bad: true},
		{in: "${A-b}", bad: true},
		{in: "${A", bad: true},
		// A default may hold references: expanded only when used.
		{in: "${U:-${A}}", out: "1"},
		{in: "${U:-x${A}y}z", out: "x1yz"},
		{in: "${A:-${U}}", out: "1"},
		{in: "${U:-${V}}", bad: true},
		{in: "${U:-${E:-d}}", out: "d"},
		{in: "${U:-${A}", bad: true},
	} {
		got, reasons := expandString(tc.in, lookup)
		if tc.bad != (len(reasons) > 0) || (!tc.bad && got != tc.out) {
			t.Errorf("expandString(%q) = %q, %q; want %q (error %v)", tc.in, got, reasons, tc.out, tc.bad)
		}
	}
}
