// Command boltbench measures the boltdb driver end to end next to the
// memory driver, in the same run, with the same PHP echo workers:
// throughput with PushBatch (first push to last ack, rounds alternating
// between the drivers, median of each), then single pushes from many
// clients at once (group commit) next to one fsync per push (a bbolt
// transaction per job on the same disk, the floor without group
// commit). bench/boltdb.sh builds and runs it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

func main() {
	bin := flag.String("bin", "bin/supervisor", "supervisor binary")
	jobs := flag.Int("jobs", 100000, "jobs per throughput round")
	batch := flag.Int("batch", 1000, "jobs per PushBatch")
	workers := flag.Int("workers", 2, "PHP worker processes")
	rounds := flag.Int("rounds", 3, "throughput rounds per driver; the median is reported")
	pipelining := flag.Int("pipelining", 8, "jobs.pool.pipelining")
	clients := flag.Int("clients", 64, "concurrent clients of the single-push run")
	singles := flag.Int("singles", 20000, "jobs of the single-push run")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *bin, *jobs, *batch, *workers, *rounds, *pipelining, *clients, *singles); err != nil {
		fmt.Fprintln(os.Stderr, "boltbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, n, batch, workers, rounds, depth, clients, singles int) error {
	dir, err := os.MkdirTemp(".", ".boltbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dir, err = filepath.Abs(dir)
	if err != nil {
		return err
	}
	drivers := []string{"memory", "boltdb"}
	svs := map[string]*benchkit.Supervisor{}
	for _, d := range drivers {
		sv, err := start(ctx, bin, dir, d, workers, depth)
		if err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
		defer sv.Stop()
		svs[d] = sv
	}
	payload := []byte(strings.Repeat("x", 32))
	job := func(i int) consumer.Job {
		return consumer.Job{ID: strconv.Itoa(i), Name: "Bench", Pipeline: "bench", Payload: payload}
	}
	took := map[string][]time.Duration{}
	for r := range rounds {
		for _, d := range drivers {
			sv := svs[d]
			t0 := time.Now()
			if err := benchkit.PushAll(ctx, sv.Client, n, batch, job); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			if err := sv.WaitAcked(ctx, uint64((r+1)*n), 2*time.Millisecond, nil); err != nil {
				return fmt.Errorf("%s: %w", d, err)
			}
			took[d] = append(took[d], time.Since(t0))
		}
	}
	rate := map[string]float64{}
	fmt.Printf("%d PHP echo workers, %d jobs of 32 bytes, PushBatch(%d), pipelining %d, %d rounds each, alternating\n", workers, n, batch, depth, rounds)
	for _, d := range drivers {
		ts := slices.Clone(took[d])
		slices.Sort(ts)
		rate[d] = float64(n) / ts[len(ts)/2].Seconds()
		fmt.Printf("%-7s throughput: %.0f jobs/s, median (%.0f-%.0f)\n", d, rate[d], float64(n)/ts[len(ts)-1].Seconds(), float64(n)/ts[0].Seconds())
	}
	fmt.Printf("boltdb/memory: %.2f (the goal: at least 0.5)\n", rate["boltdb"]/rate["memory"])
	svs["memory"].Stop()

	root, err := config.Load(filepath.Join(dir, "boltdb.rr.yaml"))
	if err != nil {
		return err
	}
	// The disk is shared: measure the floor just before and just after
	// the single pushes, and compare with their mean.
	before, err := fsyncEach(filepath.Join(dir, "floor1.db"), 2*time.Second)
	if err != nil {
		return err
	}
	single, err := singlePushes(ctx, svs["boltdb"], root.RPC.Listen, clients, singles)
	if err != nil {
		return err
	}
	after, err := fsyncEach(filepath.Join(dir, "floor2.db"), 2*time.Second)
	if err != nil {
		return err
	}
	floor := (before + after) / 2
	fmt.Printf("boltdb single pushes, %d clients at once: %.0f jobs/s (pipeline paused: pushes only)\n", clients, single)
	fmt.Printf("one fsync per push (a bbolt transaction per job, this disk, before and after): %.0f and %.0f jobs/s\n", before, after)
	fmt.Printf("group commit / one fsync per push: %.1fx (the goal: at least 10x)\n", single/floor)
	return nil
}

// start runs the supervisor with one pipeline "bench" of driver.
func start(ctx context.Context, bin, dir, driver string, workers, depth int) (*benchkit.Supervisor, error) {
	pipe := "{driver: memory}"
	if driver == "boltdb" {
		pipe = fmt.Sprintf("{driver: boltdb, config: {file: %q}}", filepath.Join(dir, "bench.db"))
	}
	return benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: bin, Dir: dir, Name: driver, Command: "php examples/echo-worker.php",
		Body: fmt.Sprintf(`jobs:
  pool: {num_workers: %d, pipelining: %d, allocate_timeout: 10s, destroy_timeout: 5s, supervisor: {exec_ttl: 60s}}
  consume: [bench]
  pipelines:
    bench: %s
`, workers, depth, pipe),
		Ready: benchkit.Consuming,
	})
}

// singlePushes pauses the pipeline and pushes total jobs one Push at a
// time from clients connections at once; it returns jobs/s.
func singlePushes(ctx context.Context, sv *benchkit.Supervisor, addr string, clients, total int) (float64, error) {
	if err := sv.Client.Pause(ctx, "bench"); err != nil {
		return 0, err
	}
	st, err := sv.Client.Stat(ctx)
	if err != nil || len(st) != 1 {
		return 0, fmt.Errorf("stat: %v", err)
	}
	conns := make([]*rpc.Client, clients)
	for i := range conns {
		if conns[i], err = rpc.Dial(ctx, addr); err != nil {
			return 0, err
		}
		defer conns[i].Close()
	}
	per := total / clients
	errs := make([]error, clients)
	var wg sync.WaitGroup
	t0 := time.Now()
	for c, cl := range conns {
		wg.Go(func() {
			for i := range per {
				j := consumer.Job{ID: fmt.Sprintf("s%d-%d", c, i), Name: "Bench", Pipeline: "bench", Payload: []byte("single")}
				if err := cl.Push(ctx, j); err != nil {
					errs[c] = err
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(t0)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	return float64(per*clients) / el.Seconds(), nil
}

// fsyncEach returns the jobs/s of one bbolt write transaction (one
// fsync) per job, writing jobs for d, in a fresh file at path.
func fsyncEach(path string, d time.Duration) (float64, error) {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	val := []byte(strings.Repeat("x", 64))
	t0 := time.Now()
	n := 0
	for i := 0; time.Since(t0) < d; i++ {
		n++
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucketIfNotExists([]byte("jobs"))
			if err != nil {
				return err
			}
			return b.Put([]byte(strconv.Itoa(i)), val)
		})
		if err != nil {
			return 0, err
		}
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}
