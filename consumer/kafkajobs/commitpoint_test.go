package kafkajobs

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestCommitPointPassesOnInheritedDoneOffsets: the commit metadata lists
// the done fetched entries, then the done offsets inherited from the
// previous owner (ps.skip) that lie past what was fetched, clipped at the
// first offset not fetched; with nothing left locally it still lists
// them; and the inherited ranges never push the metadata past
// doneMetaMax.
func TestCommitPointPassesOnInheritedDoneOffsets(t *testing.T) {
	ps := &partState{next: 8, skip: []offsetRange{{2, 3}, {6, 9}, {12, 12}}}
	for off, st := range []entryState{statePending, stateDone, stateDone, stateDone} {
		ps.entries = append(ps.entries, &entry{rec: &kgo.Record{Offset: int64(4 + off)}, state: st})
	}
	cp, ok := ps.commitPointLocked()
	if !ok || cp.offset.Offset != 4 || cp.meta != "pv1:5-7,8-9,12" {
		t.Fatalf("commit point %+v (ok %v), want offset 4, meta pv1:5-7,8-9,12", cp, ok)
	}

	ps.entries[0].state = stateDone
	ps.advance()
	cp, ok = ps.commitPointLocked()
	if !ok || cp.offset.Offset != 8 || cp.meta != "pv1:8-9,12" {
		t.Fatalf("commit point with nothing pending %+v (ok %v), want offset 8, meta pv1:8-9,12", cp, ok)
	}

	ps.skip = nil
	for i := range int64(2000) {
		ps.skip = append(ps.skip, offsetRange{10 + 2*i, 10 + 2*i})
	}
	cp, _ = ps.commitPointLocked()
	if len(cp.meta) > doneMetaMax || !strings.HasPrefix(cp.meta, doneMetaPrefix+"10,12,") {
		t.Fatalf("metadata of %d bytes (cap %d) starts %.20q", len(cp.meta), doneMetaMax, cp.meta)
	}
}

// TestDoneOffsetsSurviveAnOwnerThatCommitsEarly: the first owner settles
// every job but the first, so its commit lists the others as done. The
// second owner fetches one poll (fewer records than the partition holds),
// runs the first job and commits before it fetched the rest; the done
// offsets it never fetched must still be in its commit, so that a third
// owner runs nothing again.
func TestDoneOffsetsSurviveAnOwnerThatCommitsEarly(t *testing.T) {
	c := newCluster(t, 1, "orders")
	cfg := testConfig("orders")
	cfg.Ordering = OrderKey // every job has its own key (its id): all run at once
	const n = pollBatch + 6
	d1 := open(t, c, cfg, "")
	jobs := make([]consumer.Job, n)
	for i := range jobs {
		jobs[i] = consumer.Job{ID: "j" + strconv.Itoa(i)}
	}
	publish(t, d1, jobs...)
	var first *consumer.Delivery
	for range n {
		dl := receive(t, d1)
		if PositionOf(dl).Offset == 0 {
			first = dl
			continue
		}
		settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	}
	settle(t, first, consumer.Outcome{Action: consumer.Release})
	if err := d1.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	cl := rawClient(t, c)
	waitCommitted(t, cl, "orders", 0, 0) // metadata: 1 to n-1 are done

	d2 := open(t, c, cfg, "")
	dl := receive(t, d2)
	if PositionOf(dl).Offset != 0 {
		t.Fatalf("second owner got offset %d, want 0 (the rest is done)", PositionOf(dl).Offset)
	}
	settle(t, dl, consumer.Outcome{Action: consumer.Ack})
	if err := d2.Close(testCtx(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}

	d3 := open(t, c, cfg, "")
	receiveNone(t, d3, time.Second)
}
