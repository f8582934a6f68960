package sqsjobs

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

func TestConfigDefaults(t *testing.T) {
	var c Config
	c.Defaults()
	want := Config{Queue: DefaultQueue, Prefetch: 1, WaitTimeSeconds: 20 * time.Second, Priority: 10}
	if c.Queue != want.Queue || c.Prefetch != want.Prefetch || c.WaitTimeSeconds != want.WaitTimeSeconds || c.Priority != want.Priority {
		t.Fatalf("Defaults() = %+v, want %+v", c, want)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after Defaults = %v", err)
	}
	if c.FIFO() {
		t.Error("default queue reported as FIFO")
	}
}

// fieldKeys returns the keys of the *consumer.FieldError values in err.
func fieldKeys(t *testing.T, err error) []string {
	t.Helper()
	var keys []string
	var walk func(error)
	walk = func(e error) {
		var fe *consumer.FieldError
		if errors.As(e, &fe) && e == error(fe) {
			keys = append(keys, fe.Key)
			return
		}
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		t.Errorf("error %v is not a *consumer.FieldError", e)
	}
	if err != nil {
		walk(err)
	}
	slices.Sort(keys)
	return keys
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{"ok fifo", func(c *Config) { c.Queue = "q.fifo"; c.MessageGroupID = "g" }, nil},
		{"ok attributes any case", func(c *Config) {
			c.Attributes = map[string]string{"visibilitytimeout": "30", "Message_Retention_Period": "60", "RedrivePolicy": "{}"}
		}, nil},
		{"blank queue", func(c *Config) { c.Queue = " " }, []string{"queue"}},
		{"prefetch high", func(c *Config) { c.Prefetch = 11 }, []string{"prefetch"}},
		{"prefetch negative", func(c *Config) { c.Prefetch = -1 }, []string{"prefetch"}},
		{"visibility too long", func(c *Config) { c.VisibilityTimeout = 43201 * time.Second }, []string{"visibility_timeout"}},
		{"visibility fraction", func(c *Config) { c.VisibilityTimeout = 1500 * time.Millisecond }, []string{"visibility_timeout"}},
		{"wait too long", func(c *Config) { c.WaitTimeSeconds = 21 * time.Second }, []string{"wait_time_seconds"}},
		{"zero as in RoadRunner configs", func(c *Config) { c.WaitTimeSeconds = 0 }, nil},
		{"wait negative", func(c *Config) { c.WaitTimeSeconds = -time.Second }, []string{"wait_time_seconds"}},
		{"error visibility negative", func(c *Config) { c.ErrorVisibilityTimeout = -time.Second }, []string{"error_visibility_timeout"}},
		{"group on standard queue", func(c *Config) { c.MessageGroupID = "g" }, []string{"message_group_id"}},
		{"priority", func(c *Config) { c.Priority = -3 }, []string{"priority"}},
		{"unknown attribute", func(c *Config) { c.Attributes = map[string]string{"Colour": "red"} }, []string{"attributes.Colour"}},
		{"empty tag key", func(c *Config) { c.Tags = map[string]string{"": "x"} }, []string{"tags"}},
		{"everything at once", func(c *Config) { c.Prefetch = 0; c.Priority = -1; c.WaitTimeSeconds = time.Minute },
			[]string{"prefetch", "priority", "wait_time_seconds"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			c.Defaults()
			tc.edit(&c)
			if got := fieldKeys(t, c.Validate()); !slices.Equal(got, tc.want) {
				t.Fatalf("Validate() keys = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestAttributeName(t *testing.T) {
	for in, want := range map[string]string{
		"visibilitytimeout":    "VisibilityTimeout",
		"VISIBILITY_TIMEOUT":   "VisibilityTimeout",
		"fifoqueue":            "FifoQueue",
		"redrive_policy":       "RedrivePolicy",
		"SqsManagedSseEnabled": "SqsManagedSseEnabled",
	} {
		if got, ok := attributeName(in); !ok || got != want {
			t.Errorf("attributeName(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"QueueArn", "ApproximateNumberOfMessages", "All", "nope"} {
		if got, ok := attributeName(in); ok {
			t.Errorf("attributeName(%q) = %q, want not settable", in, got)
		}
	}
}

func TestGlobalValidate(t *testing.T) {
	cases := []struct {
		name string
		g    Global
		want []string
	}{
		{"empty is the default chain", Global{}, nil},
		{"static", Global{Key: "k", Secret: "s", SessionToken: "t", Region: "us-east-1", Endpoint: "http://127.0.0.1:4566"}, nil},
		{"key without secret", Global{Key: "k"}, []string{"key"}},
		{"token alone", Global{SessionToken: "t"}, []string{"session_token"}},
		{"endpoint without scheme", Global{Endpoint: "127.0.0.1:4566"}, []string{"endpoint"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := tc.g
			g.Defaults()
			if got := fieldKeys(t, g.Validate()); !slices.Equal(got, tc.want) {
				t.Fatalf("Validate() keys = %q, want %q", got, tc.want)
			}
		})
	}
}
