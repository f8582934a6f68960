package pool

import (
	"fmt"
	"slices"
	"time"
)

// ScaleInfo is a pool's size, for `supervisor workers` and the metrics.
type ScaleInfo struct {
	// Min and Max bound the size; equal when the pool does not scale.
	Min, Max int
	// Target is the size the pool keeps now: Min, or more while scaled up.
	Target int
	// Running counts the workers in service (starting ones excluded).
	Running int
	// Waiting counts the Exec calls waiting for a free worker.
	Waiting int
	// Ups and Downs count the scaling steps since the pool opened.
	Ups, Downs uint64
}

// Size returns the pool's size now.
func (p *Pool) Size() ScaleInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ScaleInfo{
		Min:     p.cfg.NumWorkers,
		Max:     max(p.cfg.NumWorkers, p.cfg.Scale.Max),
		Target:  p.target,
		Running: p.running(),
		Waiting: len(p.waiters),
		Ups:     p.scaleUps,
		Downs:   p.scaleDowns,
	}
}

// scaler applies Config.Scale every WatchTick until Stop.
func (p *Pool) scaler() {
	t := time.NewTicker(p.cfg.Supervisor.WatchTick)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			p.scale(time.Now())
		}
	}
}

// scale makes one scaling decision at now: grow when Exec calls wait for
// a worker, else retire the workers idle past Scale.IdleTimeout down to
// NumWorkers. Each step is logged with its reason and told to a
// ScaleObserver.
func (p *Pool) scale(now time.Time) {
	s := p.cfg.Scale
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	if n, why := p.growLocked(now); n > 0 {
		p.target += n
		p.scaleUps++
		target := p.target
		p.kick()
		p.mu.Unlock()
		p.log.Info("pool scaled up", "added", n, "size", target, "max", s.Max, "reason", why)
		p.observeScale(true, n)
		return
	}
	var stop []*worker
	for _, w := range slices.Clone(p.idle) {
		if p.target <= p.cfg.NumWorkers {
			break
		}
		if !w.counted || w.state != stateReady || now.Sub(w.lastUsed) < s.IdleTimeout {
			continue
		}
		// Only an idle worker (in p.idle, so holding no job) is retired.
		p.target--
		p.retireLocked(w, retireScaleDown)
		stop = append(stop, w)
	}
	if len(stop) > 0 {
		p.scaleDowns++
	}
	target := p.target
	p.mu.Unlock()
	if len(stop) == 0 {
		return
	}
	pids := make([]int, len(stop))
	for i, w := range stop {
		pids[i] = w.pid
	}
	p.log.Info("pool scaled down", "retired", len(stop), "pids", pids, "size", target, "min", p.cfg.NumWorkers,
		"reason", fmt.Sprintf("idle for %s or more (idle_timeout)", s.IdleTimeout))
	p.observeScale(false, len(stop))
}

// growLocked returns how many workers to add now and why (0 when none):
// up to SpawnRate, no more than the waiting Exec calls that no starting
// worker will serve, never past Max. Called with p.mu held.
func (p *Pool) growLocked(now time.Time) (int, string) {
	s := p.cfg.Scale
	if len(p.waiters) == 0 || p.target >= s.Max {
		return 0, ""
	}
	oldest := now.Sub(p.waiters[0].since)
	if s.WaitThreshold > 0 && oldest < s.WaitThreshold {
		return 0, ""
	}
	starting := max(0, p.live-p.running())
	need := len(p.waiters) - starting
	if need <= 0 {
		return 0, ""
	}
	n := min(s.SpawnRate, s.Max-p.target, need)
	return n, fmt.Sprintf("%d jobs waiting for a free worker, the oldest for %s", len(p.waiters), oldest.Round(time.Millisecond))
}

// observeScale tells a ScaleObserver about a scaling step. Called without
// p.mu.
func (p *Pool) observeScale(up bool, n int) {
	if so, ok := p.cfg.Observer.(ScaleObserver); ok {
		so.PoolScaled(up, n)
	}
}
