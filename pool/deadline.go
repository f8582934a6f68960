package pool

import (
	"context"
	"time"
)

// jobDeadline enforces the deadline of the job running on pr (exec_ttl,
// or ctx's deadline when earlier): through pr's exec timer when stdout is
// read in blocking mode (an interrupted worker is retired, so its pipes
// carry no deadline between jobs), else through the pipes' own deadlines,
// which are always set so that none of an earlier job's is left.
type jobDeadline struct {
	p     *Pool
	pr    *proc
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
	if b.pr.stdout.blocking {
		if !dl.IsZero() {
			b.armed = true
			b.pr.exec.set(dl)
		}
		return
	}
	b.armed = true
	_ = b.pr.stdout.SetReadDeadline(dl)
	_ = b.pr.stdin.SetWriteDeadline(dl)
}

// disarm clears the deadline between jobs.
func (b *jobDeadline) disarm() {
	if !b.armed {
		return
	}
	b.armed = false
	if b.pr.stdout.blocking {
		b.pr.exec.set(time.Time{})
		return
	}
	_ = b.pr.stdout.SetReadDeadline(time.Time{})
	_ = b.pr.stdin.SetWriteDeadline(time.Time{})
}
