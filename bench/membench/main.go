// Command membench measures the supervisor end to end on the memory driver
// with real PHP workers: throughput from the first push to the last ack,
// push-to-ack latency percentiles at half that rate, the supervisor's own CPU
// time per job and its memory. bench/memory.sh builds and runs it.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
	"github.com/pipevisor/pipevisor/consumer"
)

func main() {
	bin := flag.String("bin", "bin/supervisor", "supervisor binary")
	jobs := flag.Int("jobs", 100000, "jobs to push in the throughput run")
	batch := flag.Int("batch", 1000, "jobs per PushBatch")
	workers := flag.Int("workers", 2, "PHP worker processes")
	latencyFor := flag.Duration("latency-for", 3*time.Second, "how long the latency run pushes")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := run(ctx, *bin, *jobs, *batch, *workers, *latencyFor); err != nil {
		fmt.Fprintln(os.Stderr, "membench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin string, n, batch, workers int, latencyFor time.Duration) error {
	dir, err := os.MkdirTemp("", "membench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Run 1: throughput, CPU per job, RSS with n jobs queued.
	sv, err := start(ctx, bin, dir, "echo", workers, "php examples/echo-worker.php", "")
	if err != nil {
		return err
	}
	defer sv.Stop()
	payload := []byte(strings.Repeat("x", 32))
	echoJob := func(i int) consumer.Job {
		return consumer.Job{ID: strconv.Itoa(i), Name: "Bench", Pipeline: "bench", Payload: payload}
	}
	cpu0 := sv.CPU()
	t0 := time.Now()
	if err := benchkit.PushAll(ctx, sv.Client, n, batch, echoJob); err != nil {
		return err
	}
	pushDone := time.Since(t0)
	if err := sv.WaitAcked(ctx, uint64(n), 2*time.Millisecond, nil); err != nil {
		return err
	}
	took := time.Since(t0)
	cpu := sv.CPU() - cpu0
	rate := float64(n) / took.Seconds()

	if err := sv.Client.Pause(ctx, "bench"); err != nil {
		return err
	}
	if err := benchkit.PushAll(ctx, sv.Client, n, batch, echoJob); err != nil {
		return err
	}
	rssQueued := sv.MemKB("VmRSS")
	if err := sv.Client.Resume(ctx, "bench"); err != nil {
		return err
	}
	if err := sv.WaitAcked(ctx, uint64(2*n), 2*time.Millisecond, nil); err != nil {
		return err
	}
	peak := sv.MemKB("VmHWM")
	sv.Stop()

	// Run 2: latency at half the measured rate.
	latLog := filepath.Join(dir, "latency.log")
	lv, err := start(ctx, bin, dir, "latency", workers, "php bench/latency-worker.php", latLog)
	if err != nil {
		return err
	}
	defer lv.Stop()
	target := rate / 2
	tick := 2 * time.Millisecond
	perTick := max(1, int(target*tick.Seconds()))
	sent := 0
	tk := time.NewTicker(tick)
	end := time.Now().Add(latencyFor)
	for time.Now().Before(end) {
		<-tk.C
		// The payload is the push time in µs, which the latency worker
		// subtracts from the time it acks.
		err := benchkit.PushAll(ctx, lv.Client, perTick, perTick, func(i int) consumer.Job {
			return consumer.Job{ID: strconv.Itoa(sent + i), Name: "Bench", Pipeline: "bench", Payload: fmt.Appendf(nil, "%-32d", time.Now().UnixMicro())}
		})
		if err != nil {
			return err
		}
		sent += perTick
	}
	tk.Stop()
	if err := lv.WaitAcked(ctx, uint64(sent), 2*time.Millisecond, nil); err != nil {
		return err
	}
	lv.Stop()
	lats, err := readLatencies(latLog)
	if err != nil {
		return err
	}

	fmt.Printf("memory driver, %d PHP echo workers, %d jobs of 32 bytes, PushBatch(%d)\n", workers, n, batch)
	fmt.Printf("throughput: %.0f jobs/s (first push to last ack %s; pushing took %s)\n", rate, took.Round(time.Millisecond), pushDone.Round(time.Millisecond))
	fmt.Printf("supervisor CPU: %.2f µs/job\n", float64(cpu.Microseconds())/float64(n))
	fmt.Printf("RSS with %d jobs queued: %.1f MB; peak RSS: %.1f MB\n", n, float64(rssQueued)/1024, float64(peak)/1024)
	fmt.Printf("latency at %.0f jobs/s (%d jobs): p50 %s p99 %s max %s\n", float64(sent)/latencyFor.Seconds(), len(lats),
		benchkit.Percentile(lats, 0.50), benchkit.Percentile(lats, 0.99), benchkit.Percentile(lats, 1))
	return nil
}

// start runs the supervisor with one memory pipeline "bench" consumed by
// workers processes of command; latLog goes to the workers as
// BENCH_LATENCY_LOG.
func start(ctx context.Context, bin, dir, name string, workers int, command, latLog string) (*benchkit.Supervisor, error) {
	return benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: bin, Dir: dir, Name: name, Command: command,
		Env: map[string]string{"BENCH_LATENCY_LOG": latLog},
		Body: fmt.Sprintf(`jobs:
  pool: {num_workers: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench: {driver: memory}
`, workers),
	})
}

// readLatencies reads the latency log the workers wrote (push-to-ack in
// µs, one a line) and returns it sorted.
func readLatencies(path string) ([]time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, err := strconv.ParseInt(strings.TrimSpace(sc.Text()), 10, 64)
		if err == nil {
			out = append(out, time.Duration(v)*time.Microsecond)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, sc.Err()
}
