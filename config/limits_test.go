package config

import (
	"strings"
	"testing"
)

// limitsYAML is a minimal valid config with extra appended to the rpc:
// section and pool as the keys of jobs.pool.
func limitsYAML(rpcKeys, pool string) string {
	return "version: \"3\"\nrpc:\n  listen: tcp://127.0.0.1:6001\n" + rpcKeys +
		"server:\n  command: php worker.php\njobs:\n  pool:\n" + pool
}

// jobs.pool.num_workers above MaxNumWorkers fails with the key and the
// maximum named; MaxNumWorkers itself loads.
func TestNumWorkersMaximum(t *testing.T) {
	if _, err := Parse([]byte(limitsYAML("", "    num_workers: 500\n"))); err != nil {
		t.Fatalf("num_workers: 500: %v", err)
	}
	for _, n := range []string{"501", "100000", "-1"} {
		_, err := Parse([]byte(limitsYAML("", "    num_workers: "+n+"\n")))
		if err == nil {
			t.Fatalf("num_workers: %s loaded", n)
		}
		for _, want := range []string{"jobs.pool.num_workers", "must be from 0 to 500", "got " + n} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("num_workers: %s: error %q does not say %q", n, err, want)
			}
		}
	}
}

// The RPC limits load with their defaults when absent or 0, as written
// when set, and a bad value is an error naming its key.
func TestRPCLimits(t *testing.T) {
	r, err := Parse([]byte(limitsYAML("", "    num_workers: 1\n")))
	if err != nil {
		t.Fatal(err)
	}
	if r.RPC.MaxConnections != DefaultRPCMaxConnections || r.RPC.MaxInflightBytes != DefaultRPCMaxInflightBytes {
		t.Fatalf("defaults: %+v", r.RPC)
	}
	r, err = Parse([]byte(limitsYAML("  max_connections: 7\n  max_inflight_bytes: 2097152\n", "    num_workers: 1\n")))
	if err != nil {
		t.Fatal(err)
	}
	if r.RPC.MaxConnections != 7 || r.RPC.MaxInflightBytes != 2<<20 {
		t.Fatalf("set: %+v", r.RPC)
	}
	for _, c := range []struct{ keys, want string }{
		{"  max_connections: -1\n", "rpc.max_connections: must be >= 0"},
		{"  max_inflight_bytes: -5\n", "rpc.max_inflight_bytes: must be at least 1048576 (1 MiB)"},
		{"  max_inflight_bytes: 1000\n", "rpc.max_inflight_bytes: must be at least 1048576 (1 MiB)"},
	} {
		_, err := Parse([]byte(limitsYAML(c.keys, "    num_workers: 1\n")))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: error %v, want %q", c.keys, err, c.want)
		}
	}
}
