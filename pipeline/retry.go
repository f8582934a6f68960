package pipeline

import "time"

// RetryPolicy is the per-pipeline retry configuration
// (jobs.pipelines.<name>.retry in .rr.yaml).
type RetryPolicy struct {
	// MaxAttempts is the total number of deliveries a job may have; past it
	// a failing job is dead-lettered. 0 means the default (3).
	MaxAttempts int `yaml:"max_attempts"`
	// Backoff shapes the delay before a failed job runs again.
	Backoff Backoff `yaml:"backoff"`
}

// Backoff is an exponential backoff: initial * multiplier^(attempt-1),
// capped at Max, with +/- Jitter (a fraction 0..1) applied.
type Backoff struct {
	Initial    time.Duration `yaml:"initial"`
	Max        time.Duration `yaml:"max"`
	Multiplier float64       `yaml:"multiplier"`
	Jitter     float64       `yaml:"jitter"`
}
