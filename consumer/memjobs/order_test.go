package memjobs_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// TestOrderMatchesModel drives a queue with random publishes (mixed
// priorities), receives and settlements (ack, Retry(0), Release) and checks
// every hand-out against a model: the ready job with the smallest
// (priority, publish position), where a job put back keeps its position.
func TestOrderMatchesModel(t *testing.T) {
	checkOrderModel(t, 5, 3)
}

// TestOrderMatchesModelSinglePublishes is the same with jobs published one
// at a time, faster than they are taken: the backlog grows past the point
// where jobs published alone go into open packs, which are appended to
// while the consumer takes from the FIFO ahead of them.
func TestOrderMatchesModelSinglePublishes(t *testing.T) {
	checkOrderModel(t, 1, 5)
}

// checkOrderModel runs the model check with batches of 1 to maxBatch jobs,
// publishing at publishWeight out of 10 steps (receiving at 4).
func checkOrderModel(t *testing.T, maxBatch, publishWeight int) {
	t.Helper()
	type job struct {
		id   string
		prio int64
		pos  int
	}
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 7))
		q := newQueue(t, memjobs.Config{Priority: 5, Prefetch: 1000})
		var ready []job // the model
		held := map[string]job{}
		deliveries := map[string]*consumer.Delivery{}
		pos := 0
		for step := range 2000 {
			switch op := rng.IntN(10); {
			case op < publishWeight: // publish a batch
				batch := make([]consumer.Job, 1+rng.IntN(maxBatch))
				for i := range batch {
					pos++
					p := int64(rng.IntN(4)) // 0 takes the pipeline priority
					id := strconv.Itoa(pos)
					batch[i] = consumer.Job{ID: id, Name: "J", Payload: []byte(id), Priority: p}
					if p == 0 {
						p = 5
					}
					ready = append(ready, job{id: id, prio: p, pos: pos})
				}
				publish(t, q, batch...)
			case op < publishWeight+4 && len(ready) > 0: // receive
				d := receive(t, q)
				i := slices.IndexFunc(ready, func(j job) bool { return j.id == d.ID })
				best := slices.MinFunc(ready, func(a, b job) int {
					if a.prio != b.prio {
						return int(a.prio - b.prio)
					}
					return a.pos - b.pos
				})
				if i < 0 || ready[i].id != best.id {
					t.Fatalf("seed %d step %d: got job %s, want %s", seed, step, d.ID, best.id)
				}
				if string(d.Body) != d.ID {
					t.Fatalf("seed %d step %d: job %s has payload %q", seed, step, d.ID, d.Body)
				}
				held[d.ID] = ready[i]
				deliveries[d.ID] = d
				ready = slices.Delete(ready, i, i+1)
			case len(held) > 0: // settle one held job
				var id string
				for id = range held {
					break
				}
				o := consumer.Outcome{Action: []consumer.Action{consumer.Ack, consumer.Retry, consumer.Release}[rng.IntN(3)]}
				settle(t, deliveries[id], o)
				if o.Action != consumer.Ack {
					ready = append(ready, held[id])
				}
				delete(held, id)
				delete(deliveries, id)
			}
		}
		st, err := q.Stat(context.Background())
		if err != nil || st.Ready != int64(len(ready)) || st.Active != int64(len(held)) {
			t.Fatalf("seed %d: Stat = %+v, %v; model has %d ready, %d held", seed, st, err, len(ready), len(held))
		}
		for _, d := range deliveries {
			settle(t, d, consumer.Outcome{Action: consumer.Ack})
		}
	}
}

// modelJob is a job as TestFullModel's model sees it.
type modelJob struct {
	id      string
	name    string
	prio    int64
	pos     int
	key     string
	autoAck bool
	attempt int
	hdr     string
}

// TestFullModel drives a queue with random batches and single publishes
// (so open packs form) of jobs with three priorities, keys, auto-ack,
// headers and payloads up to 200 bytes, random receives, and random Ack,
// Retry(0), Release and Dead settlements. Every hand-out is checked
// against a model (the ready job with the smallest (priority, publish
// position) whose key has no earlier unfinished job), field by field;
// bodies of held deliveries must never change; Stat and the dead list
// must match.
func TestFullModel(t *testing.T) {
	for seed := range uint64(20) {
		runFullModel(t, seed)
	}
}

func runFullModel(t *testing.T, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	q := memjobs.New("q", memjobs.Config{Priority: 5, Prefetch: 100000}, nil)
	var queued []modelJob // ready or pending behind lane
	held := map[string]modelJob{}
	dels := map[string]*consumer.Delivery{}
	bodies := map[string][]byte{} // copy of expected body
	pos := 0
	steps := 3000
	for step := range steps {
		op := rng.IntN(20)
		switch {
		case op < 8:
			n := 1
			if rng.IntN(3) == 0 {
				n = 1 + rng.IntN(6)
			}
			batch := make([]consumer.Job, n)
			for i := range batch {
				pos++
				p := int64(rng.IntN(3))
				id := "id" + strconv.Itoa(pos)
				j := consumer.Job{ID: id, Name: "N" + strconv.Itoa(rng.IntN(12)), Payload: []byte("body-" + id + string(bytes.Repeat([]byte{'x'}, rng.IntN(200)))), Priority: p}
				if rng.IntN(5) == 0 {
					j.Key = "k" + strconv.Itoa(rng.IntN(3))
				}
				if rng.IntN(7) == 0 {
					j.AutoAck = true
				}
				hv := ""
				if rng.IntN(3) == 0 {
					hv = "h" + id
					j.Headers = map[string][]string{"x": {hv}, "y": {"a", "b"}}
				}
				batch[i] = j
				if p == 0 {
					p = 5
				}
				bodies[id] = bytes.Clone(j.Payload)
				queued = append(queued, modelJob{id: id, name: j.Name, prio: p, pos: pos, key: j.Key, autoAck: j.AutoAck, attempt: 1, hdr: hv})
			}
			if err := q.Publish(context.Background(), batch); err != nil {
				t.Fatal(err)
			}
		case op < 15:
			// The most urgent queued job, skipping keyed jobs while an
			// earlier job of their key is unfinished (queued or held).
			first := map[string]int{}
			note := func(o modelJob) {
				if p, ok := first[o.key]; o.key != "" && (!ok || o.pos < p) {
					first[o.key] = o.pos
				}
			}
			for _, o := range queued {
				note(o)
			}
			for _, o := range held {
				note(o)
			}
			var best modelJob
			found := false
			for _, j := range queued {
				if j.key != "" && first[j.key] != j.pos {
					continue
				}
				if !found || j.prio < best.prio || (j.prio == best.prio && j.pos < best.pos) {
					best, found = j, true
				}
			}
			if !found {
				continue
			}
			d := receive(t, q)
			if d.ID != best.id {
				t.Fatalf("seed %d step %d: got %s want %s", seed, step, d.ID, best.id)
			}
			if d.Job != best.name || d.Priority != best.prio || d.Attempt != best.attempt || d.Key != best.key || !bytes.Equal(d.Body, bodies[d.ID]) {
				t.Fatalf("seed %d step %d: fields %+v want %+v", seed, step, d, best)
			}
			if best.hdr != "" && (len(d.Headers["x"]) != 1 || d.Headers["x"][0] != best.hdr) {
				t.Fatalf("seed %d step %d: headers %v want %s", seed, step, d.Headers, best.hdr)
			}
			i := slices.IndexFunc(queued, func(j modelJob) bool { return j.id == best.id })
			queued = slices.Delete(queued, i, i+1)
			if !best.autoAck {
				held[d.ID] = best
				dels[d.ID] = d
			}
		default:
			if len(held) == 0 {
				continue
			}
			ks := make([]string, 0, len(held))
			for k := range held {
				ks = append(ks, k)
			}
			slices.Sort(ks)
			id := ks[rng.IntN(len(ks))]
			j := held[id]
			d := dels[id]
			if !bytes.Equal(d.Body, bodies[id]) {
				t.Fatalf("seed %d step %d: held body of %s changed: %q", seed, step, id, d.Body)
			}
			acts := []consumer.Action{consumer.Ack, consumer.Retry, consumer.Release, consumer.Dead}
			a := acts[rng.IntN(4)]
			if err := d.Settle(context.Background(), consumer.Outcome{Action: a, Reason: "r"}); err != nil {
				t.Fatal(err)
			}
			delete(held, id)
			delete(dels, id)
			switch a {
			case consumer.Retry:
				j.attempt++
				queued = append(queued, j)
			case consumer.Release:
				queued = append(queued, j)
			case consumer.Dead:
				dl := q.Dead()
				last := dl[len(dl)-1]
				if last.Job.ID != id || !bytes.Equal(last.Job.Payload, bodies[id]) || last.Job.Name != j.name || last.Job.Priority != j.prio || last.Job.Key != j.key || last.Attempts != j.attempt {
					t.Fatalf("seed %d: dead %+v want %+v", seed, last, j)
				}
			}
		}
		if step%50 == 0 {
			st, _ := q.Stat(context.Background())
			if st.Ready != int64(len(queued)) || st.Active != int64(len(held)) {
				t.Fatalf("seed %d step %d: stat %+v model %d/%d", seed, step, st, len(queued), len(held))
			}
		}
	}
	for id, d := range dels {
		if !bytes.Equal(d.Body, bodies[id]) {
			t.Fatalf("seed %d: held body of %s changed at end: %q", seed, id, d.Body)
		}
		settle(t, d, ack)
	}
	for _, dj := range q.Dead() {
		if !bytes.Equal(dj.Job.Payload, bodies[dj.Job.ID]) {
			t.Fatalf("dead payload changed")
		}
	}
	if err := q.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}
