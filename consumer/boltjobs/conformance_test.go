package boltjobs_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
	"github.com/pipevisor/pipevisor/consumer/consumertest"
)

func TestConformance(t *testing.T) {
	features := consumertest.Features{
		Delay:               true,
		Priority:            true,
		KeyOrder:            true,
		RetryPosition:       true,
		AttemptCount:        true,
		ReleaseKeepsAttempt: true,
		AutoAck:             true,
		Timeout:             5 * time.Second,
		Quiet:               150 * time.Millisecond,
		RetryDelay:          100 * time.Millisecond,
	}
	consumertest.Run(t, features, func(t *testing.T) consumertest.Pair {
		files := boltjobs.NewFiles(nil, nil)
		cfg := boltjobs.Config{File: filepath.Join(t.TempDir(), "jobs.db")}
		q := openQueue(t, files, "conformance", cfg)
		return consumertest.Pair{
			Consumer:  q,
			Publisher: q,
			Reopen: func(t *testing.T) consumer.Consumer {
				return openQueue(t, files, "conformance", cfg)
			},
			DeadIDs: func(ctx context.Context) ([]string, error) {
				dead, err := q.ListDead(ctx, 0)
				if err != nil {
					// The suite closed q: read the file's dead bucket.
					dead, err = boltjobs.ReadDead(cfg.File, "conformance")
				}
				var ids []string
				for _, d := range dead {
					ids = append(ids, d.Job.ID)
				}
				return ids, err
			},
		}
	})
}

// openQueue opens pipeline name in cfg's file and closes it at the end of
// the test.
func openQueue(t testing.TB, files *boltjobs.Files, name string, cfg boltjobs.Config) *boltjobs.Queue {
	t.Helper()
	q, err := files.Open(context.Background(), name, cfg, nil)
	if err != nil {
		t.Fatalf("Open %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = q.Close(ctx)
	})
	return q
}
