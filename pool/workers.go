package pool

import (
	"encoding/json"
	"sort"
)

// Workers describes every worker process, in start order. RSS is read
// from /proc now (the worker and its descendants); CurrentJob is decoded
// from the running job's context.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	out := make([]WorkerInfo, len(p.all))
	for i, w := range p.all {
		out[i] = WorkerInfo{Pid: w.pid, State: w.state.String(), Jobs: w.jobs, Created: w.created}
		if w.cur != nil {
			var id struct {
				ID string `json:"id"`
			}
			if json.Unmarshal(w.cur, &id) == nil {
				out[i].CurrentJob = id.ID
				out[i].CurrentJobSince = w.curSince
			}
		}
	}
	p.mu.Unlock()
	for i := range out {
		out[i].RSS = workerMemory(out[i].Pid)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out
}
