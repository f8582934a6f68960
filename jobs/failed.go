package jobs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/pipevisor/pipevisor/consumer"
)

// deadStores returns the pipelines whose driver is a consumer.DeadStore,
// sorted by name: pipeline alone when it is not empty (its error wraps
// consumer.ErrUnknownPipeline when there is none of that name, and
// consumer.ErrNoDeadStore when its driver keeps no failed jobs).
func (m *Manager) deadStores(pipeline string) ([]*entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if pipeline != "" {
		es, err := m.lookupLocked([]string{pipeline})
		if err != nil {
			return nil, err
		}
		if _, ok := es[0].drv.(consumer.DeadStore); !ok {
			return nil, fmt.Errorf("jobs: failed jobs of %q (driver %s): %w", pipeline, es[0].cfg.Driver, consumer.ErrNoDeadStore)
		}
		return es, nil
	}
	if m.state == stateStopped {
		return nil, ErrStopped
	}
	var out []*entry
	for _, name := range slices.Sorted(maps.Keys(m.pipes)) {
		if _, ok := m.pipes[name].drv.(consumer.DeadStore); ok {
			out = append(out, m.pipes[name])
		}
	}
	return out, nil
}

// skippable reports whether err of one store may be left out of an
// operation over every pipeline: that pipeline has no dead-letter target.
func skippable(pipeline string, err error) bool {
	return pipeline == "" && errors.Is(err, consumer.ErrNoDeadStore)
}

// FailedList returns the dead jobs of pipeline, or of every pipeline when
// it is empty (pipelines by name, each oldest first), at most limit jobs
// in all when limit > 0. Pipelines without a dead-letter target are left
// out of the whole list; named alone, the error wraps
// consumer.ErrNoDeadStore.
func (m *Manager) FailedList(ctx context.Context, pipeline string, limit int) ([]consumer.DeadJob, error) {
	es, err := m.deadStores(pipeline)
	if err != nil {
		return nil, err
	}
	var out []consumer.DeadJob
	for _, e := range es {
		n := 0
		if limit > 0 {
			n = limit - len(out)
			if n <= 0 {
				break
			}
		}
		dead, err := e.drv.(consumer.DeadStore).ListDead(ctx, n)
		if skippable(pipeline, err) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("jobs: failed jobs of %q: %w", e.cfg.Name, err)
		}
		for i := range dead {
			dead[i].Job.Pipeline = e.cfg.Name
		}
		out = append(out, dead...)
	}
	return out, nil
}

// FailedShow returns the dead job with id, looked for in pipeline or in
// every pipeline when it is empty. The error wraps
// consumer.ErrDeadNotFound when no store holds it.
func (m *Manager) FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error) {
	dead, err := m.FailedList(ctx, pipeline, 0)
	if err != nil {
		return consumer.DeadJob{}, err
	}
	for _, d := range dead {
		if d.Job.ID == id {
			return d, nil
		}
	}
	return consumer.DeadJob{}, fmt.Errorf("jobs: %q: %w", id, consumer.ErrDeadNotFound)
}

// FailedRetry publishes the selected dead jobs of pipeline (of every
// pipeline when it is empty) back to their pipelines as attempt 1 with
// their headers; each leaves its dead store only once its publish was
// confirmed. It returns the ids retried. When sel names ids that no
// store holds, the error wraps consumer.ErrDeadNotFound and names them
// (the others were retried).
func (m *Manager) FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return m.failedDo(ctx, pipeline, sel, "retry", consumer.DeadStore.RetryDead)
}

// FailedRemove deletes the selected dead jobs of pipeline (of every
// pipeline when it is empty) and returns their ids; ids no store holds
// make an error that wraps consumer.ErrDeadNotFound.
func (m *Manager) FailedRemove(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return m.failedDo(ctx, pipeline, sel, "remove", consumer.DeadStore.RemoveDead)
}

// failedDo runs op on the dead store of each pipeline selected.
func (m *Manager) failedDo(ctx context.Context, pipeline string, sel consumer.DeadSelection, verb string,
	op func(consumer.DeadStore, context.Context, consumer.DeadSelection) ([]string, error)) ([]string, error) {
	if !sel.All && len(sel.IDs) == 0 {
		return nil, nil
	}
	es, err := m.deadStores(pipeline)
	if err != nil {
		return nil, err
	}
	var done []string
	var errs []error
	for _, e := range es {
		ids, err := op(e.drv.(consumer.DeadStore), ctx, sel)
		done = append(done, ids...)
		if err != nil && !skippable(pipeline, err) {
			errs = append(errs, fmt.Errorf("jobs: %s failed jobs of %q: %w", verb, e.cfg.Name, err))
		}
	}
	if !sel.All {
		var missing []string
		for _, id := range sel.IDs {
			if !slices.Contains(done, id) && !slices.Contains(missing, id) {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 && len(errs) == 0 {
			errs = append(errs, fmt.Errorf("jobs: %s %q: %w", verb, missing, consumer.ErrDeadNotFound))
		}
	}
	return done, errors.Join(errs...)
}
