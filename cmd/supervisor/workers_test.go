package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/rpc"
)

func TestPrintPools(t *testing.T) {
	var b strings.Builder
	err := printPools(&b, []rpc.PoolInfo{
		{Name: "default", Min: 2, Max: 2, Size: 2, Running: 2, Pipelines: []string{"emails", "orders"}},
		{Name: "bulk", Min: 1, Max: 8, Size: 5, Running: 4, Waiting: 12, ScaleUps: 3, ScaleDowns: 1, Pipelines: []string{"imports"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []string{
		`(?m)^POOL\s+WORKERS\s+SIZE\s+MIN\s+MAX\s+WAITING\s+SCALED UP\s+SCALED DOWN\s+PIPELINES$`,
		`(?m)^default\s+2\s+2\s+2\s+2\s+0\s+0\s+0\s+emails,orders$`,
		`(?m)^bulk\s+4\s+5\s+1\s+8\s+12\s+3\s+1\s+imports$`,
	} {
		if !regexp.MustCompile(re).MatchString(b.String()) {
			t.Errorf("no line matching %s in\n%s", re, b.String())
		}
	}
	b.Reset()
	if err := printPools(&b, nil); err != nil || b.Len() != 0 {
		t.Errorf("no pools printed %q, %v", b.String(), err)
	}
}
