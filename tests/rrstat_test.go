package tests

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rrStat is the jobs.Stat entry as RoadRunner's PHP SDK reads it, plus our
// own fields.
type rrStat struct {
	Pipeline string `json:"pipeline"`
	Driver   string `json:"driver"`
	Active   int64  `json:"active"`
	Delayed  int64  `json:"delayed"`
	Ready    bool   `json:"ready"`
	Queued   int64  `json:"queued"`
	Running  int64  `json:"running"`
}

// A pipeline declared from PHP with the SDK's CreateInfo, not named in
// jobs.consume, stays paused as under RoadRunner; its stat says what
// RoadRunner's getPipelineStat() says: active is the backlog, on memory
// (6 jobs) and on RabbitMQ (3 jobs in the queue).
func TestPipelineStatReadsAsRoadRunners(t *testing.T) {
	for _, c := range []struct {
		driver string
		args   []string
		want   int64
	}{
		{"memory", []string{"backlog-memory"}, 6},
		{"amqp", []string{"backlog-amqp", fmt.Sprintf("pipevisor-rrstat-%d", time.Now().UnixNano())}, 3},
	} {
		t.Run(c.driver, func(t *testing.T) {
			requireTool(t, "php")
			sections := ""
			if c.driver == "amqp" {
				needRabbit(t, amqpBaseURL())
				sections = fmt.Sprintf("amqp:\n  addr: %q\n", amqpBaseURL())
			}
			log := filepath.Join(t.TempDir(), "jobs.log")
			s := startSupervisor(t, e2eConfig(t, behaveWorker, log, 1, sections, "      driver: memory\n"))
			out := runPHP(t, append([]string{"tests/testdata/rrstat.php", s.rpcAddr(), c.driver}, c.args...)...)
			var st rrStat
			if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &st); err != nil {
				t.Fatalf("%v in %q", err, out)
			}
			if st.Pipeline != c.args[0] || st.Driver != c.driver || st.Active != c.want || st.Ready || st.Delayed != 0 ||
				st.Queued != c.want || st.Running != 0 {
				t.Fatalf("stat %+v, want active %d (the backlog), not ready (paused), queued %d, none running", st, c.want, c.want)
			}
			// Resumed, the backlog drains.
			s.mustCLI("jobs", "resume", c.args[0])
			s.waitStat(c.args[0], 30*time.Second, func(st pipelineStat) bool { return st.Acked == uint64(c.want) })
			if code := s.terminate(); code != 0 { // delete_queue_on_stop removes the amqp queue
				t.Fatalf("exit %d", code)
			}
		})
	}
}
