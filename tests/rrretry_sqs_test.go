//go:build linux

package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRRFailRequeueCountsInHeaderSQS: RoadRunner's test worker that counts
// attempts in a header set on fail(requeue: true), on SQS without a
// retry: section: each fail sends a copy carrying the new header (and the
// attempts spent), the job acks on its 4th delivery, and the queue is
// empty after.
func TestRRFailRequeueCountsInHeaderSQS(t *testing.T) {
	endpoint := startSQS(t)
	q := newSQSInspector(t, endpoint)
	queue := sqsQueueName(t, "")
	log := filepath.Join(t.TempDir(), "jobs.log")
	sections := "sqs:\n  key: test\n  secret: test\n  region: us-east-1\n  endpoint: " + endpoint + "\n"
	s := startConsuming(t, e2eConfig(t, rrsdkWorker, log, 1, sections, fmt.Sprintf(`      driver: sqs
      config:
        queue: %s
        prefetch: 1
        wait_time_seconds: 1
`, queue)))
	url := q.url(queue)

	fail := strings.TrimSpace(s.mustCLI("push", "--pipeline", "default", "--job", "rr-fail-count", "--payload", `{"delay":1,"sdk":"4"}`))
	st := s.waitStat("default", 60*time.Second, func(st pipelineStat) bool { return st.Acked == 1 })
	if st.Requeued != 3 || st.Retried != 0 || st.Dead != 0 {
		t.Fatalf("want 1 acked after 3 requeues; got %+v", st)
	}
	checkRuns(t, log, fail, time.Second, "-", "1", "2", "3")
	stopSQSDrained(t, s, q, url)
}
