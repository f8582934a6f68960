package pool

import (
	"context"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkExec runs jobs through a pool of Go fake workers. It reports
// jobs/s and the supervisor's own CPU time per job (user+system of this
// process only; the workers are other processes).
//
//	go test ./pool -run '^$' -bench BenchmarkExec -benchtime 3s
func BenchmarkExec(b *testing.B) {
	for _, bc := range []struct {
		name     string
		mode     string
		workers  int
		parallel bool
	}{
		{"ack/serial/1-worker", "ack", 1, false},
		{"ack/serial/1-worker/cancelable-ctx", "ack", 1, false},
		{"ack/serial/1-worker/exec_ttl", "ack", 1, false},
		{"ack/parallel/2-workers", "ack", 2, true},
		{"echo/parallel/2-workers", "echo", 2, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if strings.HasSuffix(bc.name, "cancelable-ctx") {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(ctx)
				defer cancel()
			}
			cfg := fakeConfig(bc.mode, bc.workers)
			if strings.HasSuffix(bc.name, "exec_ttl") {
				cfg.Supervisor.ExecTTL = time.Minute
			}
			p, err := New(ctx, cfg, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = p.Stop(ctx) }()
			pl := job("9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91", `{"user_id":42,"template":"welcome","locale":"en"}`)
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			if bc.parallel {
				// One goroutine per worker: measure the pool, not waiting.
				b.SetParallelism(max(1, bc.workers/runtime.GOMAXPROCS(0)))
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := p.Exec(ctx, pl); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for b.Loop() {
					if _, err := p.Exec(ctx, pl); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			cpu := cpuTime() - cpu0
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/job")
		})
	}
}
