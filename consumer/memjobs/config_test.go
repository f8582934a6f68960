package memjobs_test

import (
	"errors"
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/memjobs"
)

func TestConfigDefaults(t *testing.T) {
	var c memjobs.Config
	c.Defaults()
	if c.Priority != 10 || c.Prefetch != 100000 {
		t.Fatalf("Defaults() = %+v, want priority 10, prefetch 100000", c)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after Defaults = %v", err)
	}
	c = memjobs.Config{Priority: 3, Prefetch: 7}
	c.Defaults()
	if c.Priority != 3 || c.Prefetch != 7 {
		t.Fatalf("Defaults changed set fields: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	c := memjobs.Config{Priority: -1, Prefetch: -5}
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted negative priority and prefetch")
	}
	keys := map[string]bool{}
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *consumer.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *consumer.FieldError", e)
		}
		keys[fe.Key] = true
	}
	if !keys["priority"] || !keys["prefetch"] || len(keys) != 2 {
		t.Fatalf("Validate reported keys %v, want priority and prefetch", keys)
	}
}
