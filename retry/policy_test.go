package retry

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// half is a jitter source that adds no jitter.
func half() float64 { return 0.5 }

func TestBackoff(t *testing.T) {
	p := Policy{Backoff: Backoff{Initial: 100 * time.Millisecond, Max: time.Second, Multiplier: 3}}.WithDefaults()
	for attempt, want := range map[int]time.Duration{
		0: 100 * time.Millisecond, 1: 100 * time.Millisecond, 2: 300 * time.Millisecond,
		3: 900 * time.Millisecond, 4: time.Second, 60: time.Second, 5000: time.Second,
	} {
		if got := p.Delay(attempt, half); got != want {
			t.Errorf("Delay(%d) = %v, want %v", attempt, got, want)
		}
	}

	p.Backoff.Jitter = 0.1
	low := p.Delay(2, func() float64 { return 0 })
	high := p.Delay(2, func() float64 { return 0.999999 })
	if low != 270*time.Millisecond {
		t.Errorf("Delay with rnd 0 = %v, want 270ms", low)
	}
	if high < 329*time.Millisecond || high > 330*time.Millisecond {
		t.Errorf("Delay with rnd ~1 = %v, want just under 330ms", high)
	}
}

func TestDefaultsAndWithDefaults(t *testing.T) {
	want := Policy{MaxAttempts: 3, Backoff: Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.1}}
	if got := Defaults(); got != want {
		t.Errorf("Defaults() = %+v, want %+v", got, want)
	}
	if err := Defaults().Validate(); err != nil {
		t.Errorf("Defaults().Validate() = %v", err)
	}
	got := Policy{}.WithDefaults()
	want.Backoff.Jitter = 0
	if got != want {
		t.Errorf("zero.WithDefaults() = %+v, want %+v", got, want)
	}
	if got := (Policy{Backoff: Backoff{Initial: 2 * time.Minute}}).WithDefaults(); got.Backoff.Max != 2*time.Minute {
		t.Errorf("Max below a large Initial: %v", got.Backoff.Max)
	}
	if got := (Policy{Configured: true}).WithDefaults(); !got.Configured || got.MaxAttempts != DefaultMaxAttempts {
		t.Errorf("WithDefaults of a configured policy = %+v, want it still Configured with the defaults", got)
	}
}

func TestPolicyValidate(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		keys []string
	}{
		{name: "zero is valid", p: Policy{}},
		{name: "negative attempts", p: Policy{MaxAttempts: -1}, keys: []string{"max_attempts"}},
		{name: "negative durations", p: Policy{Backoff: Backoff{Initial: -1, Max: -1}}, keys: []string{"backoff.initial", "backoff.max"}},
		{name: "max below initial", p: Policy{Backoff: Backoff{Initial: time.Minute, Max: time.Second}}, keys: []string{"backoff.max"}},
		{name: "multiplier below 1", p: Policy{Backoff: Backoff{Multiplier: 0.5}}, keys: []string{"backoff.multiplier"}},
		{name: "jitter above 1", p: Policy{Backoff: Backoff{Jitter: 1.5}}, keys: []string{"backoff.jitter"}},
		{name: "jitter negative", p: Policy{Backoff: Backoff{Jitter: -0.1}}, keys: []string{"backoff.jitter"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			var keys []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *consumer.FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("error %v is not a *consumer.FieldError", e)
					}
					keys = append(keys, fe.Key)
				}
			}
			if !reflect.DeepEqual(keys, tt.keys) {
				t.Errorf("Validate() keys = %v, want %v (err %v)", keys, tt.keys, err)
			}
		})
	}
}
