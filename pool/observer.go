package pool

// ExitReason says why a worker process left the pool. Every reason but
// ExitStartFailed and ExitScaleDown is followed by a replacement;
// ExitScaleDown is not reported to an Observer.
type ExitReason string

// Exit reasons reported to an Observer.
const (
	ExitMaxJobs       ExitReason = "max_jobs"          // ran max_jobs jobs
	ExitTTL           ExitReason = "ttl"               // supervisor.ttl reached
	ExitIdleTTL       ExitReason = "idle_ttl"          // idle past supervisor.idle_ttl
	ExitMemory        ExitReason = "max_worker_memory" // RSS over supervisor.max_worker_memory
	ExitReset         ExitReason = "reset"             // replaced by Reset (SIGHUP, `supervisor reset`)
	ExitStopRequested ExitReason = "stop_requested"    // the worker replied {"stop":true}
	ExitStrayOutput   ExitReason = "stray_output"      // wrote to stdout when no job was waiting for a reply
	ExitKilled        ExitReason = "killed"            // SIGKILLed after a failed job (exec_ttl, a broken reply, an interrupted job) or by someone else
	ExitCrashed       ExitReason = "crashed"           // exited on its own, idle or mid-job
	ExitStartFailed   ExitReason = "start_failed"      // died or failed the handshake while starting
	ExitScaleDown     ExitReason = "scale_down"        // idle past the scaling idle_timeout with the pool above its minimum; not replaced
	ExitOther         ExitReason = "other"
)

// ScaleObserver is implemented by an Observer that wants each scaling
// step of a pool with Config.Scale: up is true when n workers were
// added, false when n were retired. Called without the pool's lock.
type ScaleObserver interface {
	PoolScaled(up bool, n int)
}

// Observer is told about every worker process that exits while the pool
// is in service (workers stopped by Pool.Stop are not reported). It is
// called once per process, from the goroutine that reaped it, and must be
// cheap and safe for concurrent use. Set it in Config.Observer.
type Observer interface {
	WorkerExited(reason ExitReason)
}

// exitReason classifies a reaped worker, or returns "" when nothing is to
// be reported. Called with p.mu held, before the worker is forgotten.
func (p *Pool) exitReason(w *worker) ExitReason {
	if p.cfg.Observer == nil || p.closed {
		return ""
	}
	switch w.state {
	case stateStarting:
		return ExitStartFailed
	case stateReady, stateWorking:
		return ExitCrashed
	}
	if w.retire.set() {
		if w.retire.reason == ExitScaleDown {
			return "" // not a restart: nothing replaces it
		}
		return w.retire.reason
	}
	// Taken out of service after a failed job: the pool kills such a
	// worker, unless it had exited on its own already.
	if w.proc.exitInfo().killed {
		return ExitKilled
	}
	return ExitCrashed
}

// observeExit reports reason to the observer; "" reports nothing. Called
// without p.mu.
func (p *Pool) observeExit(reason ExitReason) {
	if reason != "" {
		p.cfg.Observer.WorkerExited(reason)
	}
}
