package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/pipevisor/pipevisor/consumer"
)

// Push publishes jobs to their pipelines (Job.Pipeline) and returns once
// every broker confirmed them. Jobs are grouped by pipeline, keeping their
// order, with one Publish call per pipeline, in the order the pipelines
// first appear in the batch. When a job names an unknown pipeline nothing
// is published and the error wraps consumer.ErrUnknownPipeline. When a
// publish fails, the error holds a *consumer.BatchError indexed into jobs:
// the jobs the driver did not confirm (failed, or wrapping
// consumer.ErrInDoubt), and every job of the pipelines not yet published
// (ErrNotPublished: failed); consumer.ReportOf sorts them. Paused and
// not-consumed pipelines accept pushes.
//
// With Config.Tracer set, each job gets a push span, a child of the
// traceparent in its headers when it has one, and is published with the
// span's traceparent in its headers (jobs itself is not modified).
func (m *Manager) Push(ctx context.Context, jobs []consumer.Job) error {
	if len(jobs) == 0 {
		return nil
	}
	if m.cfg.Tracer == nil {
		return m.push(ctx, jobs)
	}
	traced, spans := m.cfg.Tracer.StartPush(ctx, jobs)
	err := m.push(ctx, traced)
	spans.End(err)
	return err
}

// push is Push without tracing.
func (m *Manager) push(ctx context.Context, jobs []consumer.Job) error {
	m.mu.RLock()
	if m.state == stateStopped {
		m.mu.RUnlock()
		return ErrStopped
	}
	first := jobs[0].Pipeline
	single := true
	for i := range jobs {
		if jobs[i].Pipeline != first {
			single = false
			break
		}
	}
	if single {
		e := m.pipes[first]
		if e == nil {
			err := m.unknownLocked([]string{first})
			m.mu.RUnlock()
			return fmt.Errorf("jobs: push: %w", err)
		}
		m.mu.RUnlock()
		if err := e.drv.Publish(ctx, jobs); err != nil {
			return fmt.Errorf("jobs: push to %q: %w", first, err)
		}
		return nil
	}

	type group struct {
		e   *entry
		idx []int // indexes into jobs
	}
	var order []*group
	byName := make(map[string]*group)
	var unknown []string
	for i := range jobs {
		name := jobs[i].Pipeline
		g := byName[name]
		if g == nil {
			e := m.pipes[name]
			if e == nil {
				unknown = append(unknown, name)
			}
			g = &group{e: e}
			byName[name] = g
			order = append(order, g)
		}
		g.idx = append(g.idx, i)
	}
	if len(unknown) > 0 {
		err := m.unknownLocked(unknown)
		m.mu.RUnlock()
		return fmt.Errorf("jobs: push: %w", err)
	}
	m.mu.RUnlock()

	for gi, g := range order {
		batch := make([]consumer.Job, len(g.idx))
		for k, i := range g.idx {
			batch[k] = jobs[i]
		}
		err := g.e.drv.Publish(ctx, batch)
		if err == nil {
			continue
		}
		be := &consumer.BatchError{Failed: make(map[int]error)}
		var sub *consumer.BatchError
		if errors.As(err, &sub) {
			for k, cause := range sub.Failed {
				if k >= 0 && k < len(g.idx) {
					be.Failed[g.idx[k]] = cause
				}
			}
		}
		if len(be.Failed) == 0 {
			for _, i := range g.idx {
				be.Failed[i] = err
			}
		}
		for _, later := range order[gi+1:] {
			for _, i := range later.idx {
				be.Failed[i] = ErrNotPublished
			}
		}
		return fmt.Errorf("jobs: push to %q: %w", g.e.cfg.Name, be)
	}
	return nil
}
