package pool

import (
	"context"
	"time"
)

// jobDeadline enforces the deadline of the job running on w (exec_ttl,
// or ctx's deadline when earlier): through w's exec timer when stdout is
// read in blocking mode (an interrupted worker is retired, so its pipes
// carry no deadline between jobs), else through the pipes' own deadlines,
// which are always set so that none of an earlier job's is left.
type jobDeadline struct {
	p     *Pool
	w     *worker
	ctx   context.Context
	armed bool
}

// arm sets the running job's deadline: exec_ttl from now, or ctx's
// deadline when earlier.
func (b *jobDeadline) arm(now time.Time) {
	var dl time.Time
	if ttl := b.p.cfg.Supervisor.ExecTTL; ttl > 0 {
		dl = now.Add(ttl)
	}
	if d, ok := b.ctx.Deadline(); ok && (dl.IsZero() || d.Before(dl)) {
		dl = d
	}
	if b.w.stdout.blocking {
		if !dl.IsZero() {
			b.armed = true
			b.w.exec.set(dl)
		}
		return
	}
	b.armed = true
	_ = b.w.stdout.SetReadDeadline(dl)
	_ = b.w.stdin.SetWriteDeadline(dl)
}

// disarm clears the deadline between jobs.
func (b *jobDeadline) disarm() {
	if !b.armed {
		return
	}
	b.armed = false
	if b.w.stdout.blocking {
		b.w.exec.set(time.Time{})
		return
	}
	_ = b.w.stdout.SetReadDeadline(time.Time{})
	_ = b.w.stdin.SetWriteDeadline(time.Time{})
}
