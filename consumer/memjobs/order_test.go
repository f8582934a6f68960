package memjobs_test

import (
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
			case op < 3: // publish a batch
				batch := make([]consumer.Job, 1+rng.IntN(5))
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
			case op < 7 && len(ready) > 0: // receive
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
