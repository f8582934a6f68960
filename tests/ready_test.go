package tests

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReadyIsDownOnceTheLastConsumedPipelineIsDestroyed: /ready answers
// 200 while the consumed pipeline consumes and 503, saying why, once it
// is destroyed and nothing is consumed.
func TestReadyIsDownOnceTheLastConsumedPipelineIsDestroyed(t *testing.T) {
	requireTool(t, "php")
	log := filepath.Join(t.TempDir(), "jobs.log")
	statusAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s := startSupervisor(t, productionConfig(t, 1, log, statusAddr, metricsAddr))
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body := httpGet(t, "http://"+statusAddr+"/ready")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/ready never 200: %d %q", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.mustCLI("jobs", "destroy", "default")
	code, body := httpGet(t, "http://"+statusAddr+"/ready")
	if code != 503 || !strings.Contains(body, "no consumed pipeline is consuming (jobs.consume: default)") {
		t.Fatalf("/ready after destroying the only consumed pipeline: %d %q, want 503 saying nothing is consumed", code, body)
	}
	if code, body := httpGet(t, "http://"+statusAddr+"/health"); code != 200 {
		t.Errorf("/health after the destroy: %d %q, want 200 (the workers live)", code, body)
	}
}
