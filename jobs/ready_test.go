package jobs

import (
	"context"
	"errors"
	"testing"

	"github.com/pipevisor/pipevisor/config"
)

// TestReadyNeedsAConsumedPipeline: Ready fails with ErrNothingConsumed
// once the last consumed pipeline is destroyed, and passes again when a
// pipeline named in jobs.consume is declared; a producer-only manager
// (empty consume) is ready without pipelines.
func TestReadyNeedsAConsumedPipeline(t *testing.T) {
	ctx := context.Background()
	b := newBundle(t, map[string]config.Pipeline{"a": memPipeline("a"), "b": memPipeline("b")})
	if err := b.m.Start(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { return b.m.Ready() == nil })
	if _, err := b.m.Destroy(ctx, []string{"a"}); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Ready(); !errors.Is(err, ErrNothingConsumed) {
		t.Fatalf("Ready with only a not-consumed pipeline left = %v, want ErrNothingConsumed", err)
	}
	if err := b.m.Declare(ctx, map[string]string{"name": "a", "driver": "memory"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready after declaring a again", func() bool { return b.m.Ready() == nil })

	p := newBundle(t, map[string]config.Pipeline{"out": memPipeline("out")})
	if err := p.m.Start(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.m.Destroy(ctx, []string{"out"}); err != nil {
		t.Fatal(err)
	}
	if err := p.m.Ready(); err != nil {
		t.Errorf("Ready of a producer-only manager = %v, want nil", err)
	}
}
