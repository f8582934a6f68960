package pool

// Starting a pool: Open, Start (staggered handshakes) and New.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/pipevisor/pipevisor/frame"
)

// New is Open followed by Start: it starts cfg.NumWorkers workers
// (default: one per CPU) and returns once their handshakes are done. ctx
// bounds only this start; the pool lives until Stop. If no worker starts,
// New returns Start's error and leaves nothing running.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Pool, error) {
	p, err := Open(cfg, log)
	if err != nil {
		return nil, err
	}
	if err := p.Start(ctx); err != nil {
		_ = p.Stop(context.Background())
		return nil, err
	}
	return p, nil
}

// Open returns a pool with no worker yet; Start brings the workers up.
// Meanwhile Exec waits for a worker as it does when all are busy (up to
// AllocateTimeout), so jobs may be handed to the pool before its workers
// answer their handshakes: a worker may call the supervisor's RPC before
// its first job. log receives the workers' stderr lines (nil discards
// them). The only error is a missing command.
func Open(cfg Config, log *slog.Logger) (*Pool, error) {
	cfg = cfg.withDefaults()
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("pool: no worker command")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Pool{
		cfg:       cfg,
		log:       log,
		env:       buildEnv(cfg.Env),
		cmdline:   fmt.Sprintf("%q", strings.Join(cfg.Command, " ")),
		stopFrame: frame.EncodeControl(frame.FlagCodecJSON, frame.StopPayload()),
		changed:   make(chan struct{}),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		killNow:   make(chan struct{}),
		stopped:   make(chan struct{}),
		target:    cfg.NumWorkers,
	}
	p.launch = p.launchProc
	p.life, p.endLife = context.WithCancel(context.Background())
	return p, nil
}

// Start starts cfg.NumWorkers workers and returns when each has answered
// its handshake or failed to; it may be called once. At most
// maxConcurrentStarts workers are starting at any moment, so a large pool
// does not fork every process at once and starve the machine. Workers
// that fail to start are retried in the background with backoff. If none
// starts, Start returns an error naming the command and quoting what the
// worker said; the pool then runs nothing, and the caller must still
// Stop it. ctx (and Stop) cut the start short: ErrClosed when Stop came
// first.
func (p *Pool) Start(ctx context.Context) error {
	p.mu.Lock()
	if p.closed || p.started {
		p.mu.Unlock()
		return fmt.Errorf("%w (or already started)", ErrClosed)
	}
	p.started = true
	p.live = p.cfg.NumWorkers // the slots the spawns below fill
	p.wg.Add(1)               // Stop waits for this start
	p.mu.Unlock()
	defer p.wg.Done()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(p.life, cancel)()

	type result struct {
		w   *worker
		err error
	}
	results := make([]result, p.cfg.NumWorkers)
	var start sync.WaitGroup
	slots := make(chan struct{}, maxConcurrentStarts())
	for i := range results {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			results[i] = result{nil, ctx.Err()}
			continue
		}
		start.Go(func() {
			defer func() { <-slots }()
			w, err := p.spawn(ctx)
			results[i] = result{w, err}
		})
	}
	start.Wait()
	var firstErr error
	started := 0
	p.mu.Lock()
	for _, r := range results {
		if r.err != nil {
			firstErr = cmp.Or(firstErr, r.err)
			p.live--
			p.failures++
			continue
		}
		started++
		p.add(r.w)
	}
	closed := p.closed
	p.mu.Unlock()
	switch {
	case started == 0:
		return fmt.Errorf("pool: no worker started with command %s: %w", p.cmdline, firstErr)
	case closed:
		return ErrClosed
	}
	if firstErr != nil {
		p.log.Error("some workers did not start; retrying in the background", "started", started, "want", p.cfg.NumWorkers, "err", firstErr)
		p.kick()
	}
	p.wg.Go(p.spawner)
	p.wg.Go(p.supervise)
	if p.cfg.Scale.Max > 0 {
		p.wg.Go(p.scaler)
	}
	return nil
}

// maxConcurrentStarts is how many workers Start has starting (spawned and
// not yet through their handshake) at once: one per CPU, at least 4. A
// worker's boot (interpreter, autoloader, framework) is mostly CPU, so
// more at once would not make the pool ready sooner.
func maxConcurrentStarts() int {
	return max(4, runtime.NumCPU())
}

// buildEnv is the worker environment: ours, then cfg.Env with upper-cased
// keys, then RR_MODE=jobs and RR_RELAY=pipes (later entries win).
func buildEnv(extra map[string]string) []string {
	env := os.Environ()
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, strings.ToUpper(k)+"="+extra[k])
	}
	return append(env, "RR_MODE=jobs", "RR_RELAY=pipes")
}
