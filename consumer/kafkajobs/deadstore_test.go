package kafkajobs

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
)

// failDeadCommits makes the dead group's offset commits fail while on is
// set: the broker is gone between a retry's produce and its record.
func failDeadCommits(c *kfake.Cluster, group string) *atomic.Bool {
	on := &atomic.Bool{}
	c.ControlKey(int16(kmsg.OffsetCommit), func(kreq kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := kreq.(*kmsg.OffsetCommitRequest)
		if !on.Load() || req.Group != group {
			return nil, nil, false
		}
		resp := req.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.UnknownServerError.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return on
}

func deadIDs(dead []consumer.DeadJob) []string {
	out := make([]string, len(dead))
	for i, d := range dead {
		out[i] = d.Job.ID
	}
	slices.Sort(out)
	return out
}

func listDead(t *testing.T, d *Driver) []consumer.DeadJob {
	t.Helper()
	dead, err := d.ListDead(testCtx(t, 20*time.Second), 0)
	if err != nil {
		t.Fatalf("ListDead: %v", err)
	}
	return dead
}

// The dead-letter topic is listed without recording anything; a retry
// whose record in the dead group fails (an outage) is not offered again
// and is recorded by the next operation, so that another driver (a
// restarted supervisor) does not offer it either; the retried job runs
// as attempt 1 with its headers and key; remove records the rest.
func TestDeadStore(t *testing.T) {
	c := newCluster(t, 2, "jobs", "jobs.dead")
	outage := failDeadCommits(c, DeadGroupPrefix+"jobs.dead")
	d := open(t, c, testConfig("jobs"), "jobs.dead")
	if dead := listDead(t, d); len(dead) != 0 {
		t.Fatalf("ListDead of an empty topic = %v", dead)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		publish(t, d, consumer.Job{ID: id, Name: "Job" + id, Payload: []byte("p-" + id), Key: "k-" + id,
			Headers: map[string][]string{"tenant": {"t-" + id}}})
	}
	for range 4 {
		del := receive(t, d)
		settle(t, del, consumer.Outcome{Action: consumer.Dead, Reason: "reason " + del.ID})
	}
	dead := listDead(t, d)
	if !slices.Equal(deadIDs(dead), []string{"a", "b", "c", "d"}) {
		t.Fatalf("ListDead = %v, want a b c d", deadIDs(dead))
	}
	i := slices.IndexFunc(dead, func(dj consumer.DeadJob) bool { return dj.Job.ID == "b" })
	b := dead[i]
	if b.Job.Name != "Jobb" || string(b.Job.Payload) != "p-b" || b.Job.Key != "k-b" || !slices.Equal(b.Job.Headers["tenant"], []string{"t-b"}) ||
		len(b.Job.Headers) != 1 || b.Reason != "reason b" || b.Attempts != 1 || time.Since(b.At) > time.Minute {
		t.Errorf("dead job b = %+v", b)
	}
	if again := listDead(t, d); len(again) != 4 {
		t.Fatalf("second ListDead = %v: listing recorded something", deadIDs(again))
	}

	outage.Store(true)
	ids, err := d.RetryDead(testCtx(t, 20*time.Second), consumer.DeadSelection{IDs: []string{"b", "zz"}})
	if err != nil || !slices.Equal(ids, []string{"b"}) {
		t.Fatalf("RetryDead(b) during the outage = %v, %v; want b", ids, err)
	}
	del := receive(t, d)
	if del.ID != "b" || del.Attempt != 1 || string(del.Body) != "p-b" || del.Key != "k-b" || !slices.Equal(del.Headers["tenant"], []string{"t-b"}) {
		t.Errorf("retried delivery = %s attempt %d body %q key %q headers %v", del.ID, del.Attempt, del.Body, del.Key, del.Headers)
	}
	settle(t, del, consumer.Outcome{Action: consumer.Ack})
	if left := listDead(t, d); !slices.Equal(deadIDs(left), []string{"a", "c", "d"}) {
		t.Fatalf("after the retry ListDead = %v, want a c d", deadIDs(left))
	}
	outage.Store(false)
	ids, err = d.RemoveDead(testCtx(t, 20*time.Second), consumer.DeadSelection{IDs: []string{"c"}})
	if err != nil || !slices.Equal(ids, []string{"c"}) {
		t.Fatalf("RemoveDead(c) = %v, %v", ids, err)
	}

	// A second driver knows only what the dead group recorded.
	d2 := open(t, c, Config{}, "jobs.dead")
	if left := listDead(t, d2); !slices.Equal(deadIDs(left), []string{"a", "d"}) {
		t.Fatalf("another driver lists %v, want a d", deadIDs(left))
	}
	ids, err = d2.RemoveDead(testCtx(t, 20*time.Second), consumer.DeadSelection{All: true})
	slices.Sort(ids)
	if err != nil || !slices.Equal(ids, []string{"a", "d"}) {
		t.Fatalf("RemoveDead(all) = %v, %v", ids, err)
	}
	if left := listDead(t, d); len(left) != 0 {
		t.Errorf("after remove all ListDead = %v", deadIDs(left))
	}
}

func TestGoneList(t *testing.T) {
	gone := map[int64]bool{3: true, 4: true, 5: true, 9: true, 11: true, 12: true}
	s := formatGone(gone)
	if s != "3-5,9,11-12" {
		t.Errorf("formatGone = %q", s)
	}
	if back := parseGone(s); len(back) != len(gone) || !back[4] || !back[9] || back[10] {
		t.Errorf("parseGone(%q) = %v", s, back)
	}
	p := &deadPart{pos: 3, gone: parseGone("3-5,9")}
	p.compact()
	if p.pos != 6 || len(p.gone) != 1 || !p.gone[9] {
		t.Errorf("compact = pos %d gone %v, want 6 and {9}", p.pos, p.gone)
	}
}

// A pipeline without a dead-letter topic keeps no failed jobs.
func TestDeadStoreNone(t *testing.T) {
	c := newCluster(t, 1, "jobs")
	d := open(t, c, testConfig("jobs"), "")
	if _, err := d.ListDead(context.Background(), 0); !errors.Is(err, consumer.ErrNoDeadStore) {
		t.Errorf("ListDead = %v, want ErrNoDeadStore", err)
	}
}
