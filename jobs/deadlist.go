package jobs

import (
	"errors"

	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

// ErrNoDeadList is returned by Dead for a pipeline whose driver keeps no
// dead list in memory (every driver but memory: their dead jobs go to
// the broker's dead-letter target).
var ErrNoDeadList = errors.New("jobs: the pipeline's driver keeps no dead list")

// DeadLister is a driver that keeps the jobs it settled as dead in
// memory (*memjobs.Queue).
type DeadLister interface {
	Dead() []memjobs.DeadJob
}

// Dead returns a copy of the dead list of pipeline name, oldest first.
// The error wraps consumer.ErrUnknownPipeline for a name that does not
// exist, ErrNoDeadList when its driver keeps none.
func (m *Manager) Dead(name string) ([]memjobs.DeadJob, error) {
	m.mu.RLock()
	es, err := m.lookupLocked([]string{name})
	m.mu.RUnlock()
	if err != nil {
		return nil, err
	}
	dl, ok := es[0].drv.(DeadLister)
	if !ok {
		return nil, ErrNoDeadList
	}
	return dl.Dead(), nil
}
