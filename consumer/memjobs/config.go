package memjobs

import (
	"errors"
	"fmt"

	"github.com/pipevisor/pipevisor/consumer"
)

// Default values applied by Config.Defaults.
const (
	// DefaultPriority is the pipeline priority when none is configured.
	DefaultPriority int64 = 10
	// DefaultPrefetch is the local in-flight cap when none is configured.
	DefaultPrefetch = 100000
)

// Config holds the pipeline keys of a memory pipeline
// (jobs.pipelines.<name>.config).
type Config struct {
	// Priority is the pipeline priority. Jobs published with priority 0
	// inherit it. Lower numbers are more urgent (RoadRunner semantics).
	Priority int64 `yaml:"priority"`
	// Prefetch caps how many jobs may be handed out and unsettled at once;
	// Receive blocks while the cap is reached.
	Prefetch int `yaml:"prefetch"`
}

// Defaults fills in zero fields with their default values.
func (c *Config) Defaults() {
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; it returns nil when the config is usable. Call Defaults
// first: zero values are reported as invalid.
func (c *Config) Validate() error {
	var errs []error
	if c.Priority <= 0 {
		errs = append(errs, &consumer.FieldError{Key: "priority", Reason: fmt.Sprintf("must be positive, got %d", c.Priority)})
	}
	if c.Prefetch <= 0 {
		errs = append(errs, &consumer.FieldError{Key: "prefetch", Reason: fmt.Sprintf("must be positive, got %d", c.Prefetch)})
	}
	return errors.Join(errs...)
}
