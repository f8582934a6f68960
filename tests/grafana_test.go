package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// promQL walks a Grafana dashboard and returns every PromQL expression it
// queries: targets' expr and template variables' query/definition.
func promQL(v any, out *[]string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && (k == "expr" || k == "definition") {
				*out = append(*out, s)
			}
			if k == "query" {
				if s, ok := e.(string); ok {
					*out = append(*out, s)
				}
			}
			promQL(e, out)
		}
	case []any:
		for _, e := range x {
			promQL(e, out)
		}
	}
}

// TestGrafanaDashboardQueriesExistingMetrics: every pipevisor_* metric the
// dashboard in packaging/grafana queries is in /metrics of a running
// supervisor that has run jobs.
func TestGrafanaDashboardQueriesExistingMetrics(t *testing.T) {
	requireTool(t, "php")
	raw, err := os.ReadFile(filepath.Join(testEnv.repoRoot, "packaging", "grafana", "pipevisor.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash map[string]any
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard is not JSON: %v", err)
	}
	var exprs []string
	promQL(dash, &exprs)
	nameRE := regexp.MustCompile(`pipevisor_[a-zA-Z0-9_]+`)
	var names []string
	for _, e := range exprs {
		for _, n := range nameRE.FindAllString(e, -1) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	if len(names) < 15 {
		t.Fatalf("dashboard queries only %d pipevisor metrics (%v): the walk missed its expressions", len(names), names)
	}

	log := filepath.Join(t.TempDir(), "jobs.log")
	statusAddr, metricsAddr := freeAddr(t), freeAddr(t)
	s := startSupervisor(t, productionConfig(t, 1, log, statusAddr, metricsAddr))
	s.mustCLI("push", "--pipeline", "default", "--job", "ack", "--payload", "x", "--count", "3")
	s.waitStat("default", 30*time.Second, func(st pipelineStat) bool { return st.Acked == 3 })
	_, body := httpGet(t, "http://"+metricsAddr+"/metrics")
	exposed := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, " ")
		name, _, _ = strings.Cut(name, "{")
		exposed[name] = true
	}
	for _, n := range names {
		if !exposed[n] {
			t.Errorf("dashboard queries %s, which /metrics does not expose", n)
		}
	}
}
