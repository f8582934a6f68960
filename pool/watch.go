package pool

import "context"

// watch interrupts the jobs running under one context when it ends. One
// context.AfterFunc serves every Exec with the same ctx.Done() channel (a
// pipeline passes the same ctx for all its jobs), instead of one
// registration per job.
type watch struct {
	stop func() bool
	busy int // workers running a job under this ctx
}

// maxIdleWatches bounds the watches kept for contexts with no job
// running; past it, a watch is dropped as soon as it is idle.
const maxIdleWatches = 64

// watchLocked records that w runs a job under ctx, so that ctx ending
// interrupts w's pipes (the Exec then fails with ErrExecTimeout and the
// worker is replaced). Called with p.mu held.
func (p *Pool) watchLocked(ctx context.Context, w *worker) {
	done := ctx.Done()
	if done == nil || ctx.Err() != nil {
		// Never ends, or already ended: run sends nothing then.
		return
	}
	w.done = done
	if wt := p.watches[done]; wt != nil {
		wt.busy++
		return
	}
	if p.watches == nil {
		p.watches = make(map[<-chan struct{}]*watch)
	}
	wt := &watch{busy: 1}
	p.watches[done] = wt
	p.watchWG.Add(1) // never after shutdown's Wait: a closed pool starts no job
	wt.stop = context.AfterFunc(ctx, func() {
		defer p.watchWG.Done()
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.watches[done] == wt {
			delete(p.watches, done)
		}
		for _, x := range p.all {
			if x.done == done && x.state == stateWorking {
				x.proc.interrupt()
			}
		}
	})
}

// unwatchLocked ends w's job under its ctx. The watch stays for the next
// job under the same ctx, unless too many idle ones are kept. Called with
// p.mu held.
func (p *Pool) unwatchLocked(w *worker) {
	done := w.done
	if done == nil {
		return
	}
	w.done = nil
	wt := p.watches[done]
	if wt == nil {
		return
	}
	if wt.busy--; wt.busy == 0 && len(p.watches) > maxIdleWatches {
		delete(p.watches, done)
		if wt.stop() {
			p.watchWG.Done()
		} // else firing: it finds no worker under done
	}
}

// dropWatches unregisters every watch and waits for callbacks that are
// running. Called by shutdown, without p.mu, once no Exec can start.
func (p *Pool) dropWatches() {
	p.mu.Lock()
	ws := p.watches
	p.watches = nil
	p.mu.Unlock()
	for _, wt := range ws {
		if wt.stop() {
			p.watchWG.Done()
		}
	}
	p.watchWG.Wait()
}
