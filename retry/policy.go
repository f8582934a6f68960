// Package retry holds the retry policy of a pipeline: how many deliveries
// a failing job may have and how long it waits between them. The config
// package decodes it from a pipeline's retry: section; the pipeline applies
// it in its outcome table.
package retry

import (
	"errors"
	"math"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Policy is the per-pipeline retry configuration
// (jobs.pipelines.<name>.retry in .rr.yaml).
//
// Who it governs depends on Configured. Without a retry: section it
// applies only to what the worker did not decide (an ERROR frame, a crash,
// exec_ttl, an unparseable reply), with the default values; what the
// worker decided (NACK with redelivery, REQUEUE, legacy fail with requeue)
// runs as RoadRunner runs it: no attempt cap, the worker's own delay and
// headers. With a retry: section it governs both, and a NACK or legacy
// fail with requeue that names no delay waits for the backoff.
type Policy struct {
	// MaxAttempts is the total number of deliveries a job may have; past it
	// a failing job is dead-lettered. 0 means the default (3).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff shapes the delay before a failed job runs again.
	Backoff Backoff `yaml:"backoff"`
	// Configured reports that the pipeline has a retry: section. It is
	// set by the config package, never by a key inside the section.
	Configured bool `yaml:"-"`
}

// Backoff is an exponential backoff: initial * multiplier^(attempt-1),
// capped at Max, with +/- Jitter (a fraction 0..1) applied.
type Backoff struct {
	Initial    time.Duration `yaml:"initial"`
	Max        time.Duration `yaml:"max"`
	Multiplier float64       `yaml:"multiplier"`
	Jitter     float64       `yaml:"jitter"`
}

// Default retry settings, as returned by Defaults.
const (
	DefaultMaxAttempts = 3
	DefaultInitial     = time.Second
	DefaultMax         = time.Minute
	DefaultMultiplier  = 2.0
	DefaultJitter      = 0.1
)

// Defaults returns the default policy: 3 attempts, backoff from 1s doubling
// up to 1m, with 10% jitter, not Configured. The config package decodes
// YAML over it, so an explicit `jitter: 0` in the file disables jitter.
func Defaults() Policy {
	return Policy{
		MaxAttempts: DefaultMaxAttempts,
		Backoff: Backoff{
			Initial:    DefaultInitial,
			Max:        DefaultMax,
			Multiplier: DefaultMultiplier,
			Jitter:     DefaultJitter,
		},
	}
}

// WithDefaults returns p with every zero field that has no meaningful zero
// value (MaxAttempts, Initial, Max, Multiplier) set to its default. Jitter is
// left as is: zero jitter is a valid choice.
func (p Policy) WithDefaults() Policy {
	if p.MaxAttempts == 0 {
		p.MaxAttempts = DefaultMaxAttempts
	}
	if p.Backoff.Initial == 0 {
		p.Backoff.Initial = DefaultInitial
	}
	if p.Backoff.Max == 0 {
		p.Backoff.Max = max(DefaultMax, p.Backoff.Initial)
	}
	if p.Backoff.Multiplier == 0 {
		p.Backoff.Multiplier = DefaultMultiplier
	}
	return p
}

// Validate reports every impossible value as a *consumer.FieldError whose
// Key is relative to the retry section ("max_attempts", "backoff.max", ...),
// joined with errors.Join. Zero values are accepted: they mean "default"
// (see WithDefaults).
func (p Policy) Validate() error {
	var errs []error
	add := func(key, reason string) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: reason})
	}
	if p.MaxAttempts < 0 {
		add("max_attempts", "must be at least 1 (0 means the default, 3)")
	}
	b := p.Backoff
	if b.Initial < 0 {
		add("backoff.initial", "must not be negative")
	}
	if b.Max < 0 {
		add("backoff.max", "must not be negative")
	}
	if b.Max > 0 && b.Initial > b.Max {
		add("backoff.max", "must not be less than backoff.initial")
	}
	if b.Multiplier != 0 && (b.Multiplier < 1 || math.IsNaN(b.Multiplier) || math.IsInf(b.Multiplier, 0)) {
		add("backoff.multiplier", "must be a finite number of at least 1")
	}
	if !(b.Jitter >= 0 && b.Jitter <= 1) {
		add("backoff.jitter", "must be between 0 and 1")
	}
	return errors.Join(errs...)
}

// Delay returns the delay before attempt+1 after attempt (1-based) failed:
// Initial * Multiplier^(attempt-1), capped at Max, then scaled by a factor
// drawn uniformly from [1-Jitter, 1+Jitter) using rnd, which returns a value
// in [0, 1). The result never exceeds Max * (1+Jitter) and is never negative.
// p must have gone through WithDefaults.
func (p Policy) Delay(attempt int, rnd func() float64) time.Duration {
	b := p.Backoff
	if attempt < 1 {
		attempt = 1
	}
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt-1))
	if d > float64(b.Max) || math.IsInf(d, 0) || math.IsNaN(d) {
		d = float64(b.Max)
	}
	if b.Jitter > 0 && rnd != nil {
		d *= 1 + b.Jitter*(2*rnd()-1)
	}
	if d < 0 {
		return 0
	}
	return time.Duration(d)
}
