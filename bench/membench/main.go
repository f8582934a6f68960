// Command membench measures the supervisor end to end on the memory driver
// with real PHP workers: throughput from the first push to the last ack,
// push-to-ack latency percentiles at half that rate, the supervisor's own CPU
// time per job and its memory. bench/memory.sh builds and runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

func main() {
	bin := flag.String("bin", "bin/supervisor", "supervisor binary")
	jobs := flag.Int("jobs", 100000, "jobs to push in the throughput run")
	batch := flag.Int("batch", 1000, "jobs per PushBatch")
	workers := flag.Int("workers", 2, "PHP worker processes")
	latencyFor := flag.Duration("latency-for", 3*time.Second, "how long the latency run pushes")
	flag.Parse()
	if err := run(*bin, *jobs, *batch, *workers, *latencyFor); err != nil {
		fmt.Fprintln(os.Stderr, "membench:", err)
		os.Exit(1)
	}
}

func run(bin string, n, batch, workers int, latencyFor time.Duration) error {
	dir, err := os.MkdirTemp("", "membench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	// Run 1: throughput, CPU per job, RSS with n jobs queued.
	sv, err := start(ctx, bin, dir, "echo", workers, "php examples/echo-worker.php", "")
	if err != nil {
		return err
	}
	defer sv.kill()
	payload := []byte(strings.Repeat("x", 32))
	mkBatch := func(k int, body func() []byte) []consumer.Job {
		js := make([]consumer.Job, k)
		for i := range js {
			js[i] = consumer.Job{ID: strconv.Itoa(i), Name: "Bench", Pipeline: "bench", Payload: body()}
		}
		return js
	}
	cpu0 := sv.cpu()
	t0 := time.Now()
	for pushed := 0; pushed < n; pushed += batch {
		if err := sv.cl.PushBatch(ctx, mkBatch(min(batch, n-pushed), func() []byte { return payload })); err != nil {
			return err
		}
	}
	pushDone := time.Since(t0)
	if err := sv.waitAcked(ctx, uint64(n)); err != nil {
		return err
	}
	took := time.Since(t0)
	cpu := sv.cpu() - cpu0
	rate := float64(n) / took.Seconds()

	if err := sv.cl.Pause(ctx, "bench"); err != nil {
		return err
	}
	for pushed := 0; pushed < n; pushed += batch {
		if err := sv.cl.PushBatch(ctx, mkBatch(min(batch, n-pushed), func() []byte { return payload })); err != nil {
			return err
		}
	}
	rssQueued := sv.memKB("VmRSS")
	if err := sv.cl.Resume(ctx, "bench"); err != nil {
		return err
	}
	if err := sv.waitAcked(ctx, uint64(2*n)); err != nil {
		return err
	}
	peak := sv.memKB("VmHWM")
	sv.stop()

	// Run 2: latency at half the measured rate.
	latLog := filepath.Join(dir, "latency.log")
	lv, err := start(ctx, bin, dir, "latency", workers, "php bench/latency-worker.php", latLog)
	if err != nil {
		return err
	}
	defer lv.kill()
	target := rate / 2
	tick := 2 * time.Millisecond
	perTick := max(1, int(target*tick.Seconds()))
	sent := 0
	tk := time.NewTicker(tick)
	end := time.Now().Add(latencyFor)
	for time.Now().Before(end) {
		<-tk.C
		js := mkBatch(perTick, func() []byte {
			return []byte(fmt.Sprintf("%-32d", time.Now().UnixMicro()))
		})
		if err := lv.cl.PushBatch(ctx, js); err != nil {
			return err
		}
		sent += perTick
	}
	tk.Stop()
	if err := lv.waitAcked(ctx, uint64(sent)); err != nil {
		return err
	}
	lv.stop()
	lats, err := readLatencies(latLog)
	if err != nil {
		return err
	}

	fmt.Printf("memory driver, %d PHP echo workers, %d jobs of 32 bytes, PushBatch(%d)\n", workers, n, batch)
	fmt.Printf("throughput: %.0f jobs/s (first push to last ack %s; pushing took %s)\n", rate, took.Round(time.Millisecond), pushDone.Round(time.Millisecond))
	fmt.Printf("supervisor CPU: %.2f µs/job\n", float64(cpu.Microseconds())/float64(n))
	fmt.Printf("RSS with %d jobs queued: %.1f MB; peak RSS: %.1f MB\n", n, float64(rssQueued)/1024, float64(peak)/1024)
	fmt.Printf("latency at %.0f jobs/s (%d jobs): p50 %s p99 %s max %s\n", float64(sent)/latencyFor.Seconds(), len(lats),
		pct(lats, 0.50), pct(lats, 0.99), pct(lats, 1))
	return nil
}

type supervisor struct {
	cmd *exec.Cmd
	cl  *rpc.Client
}

func start(ctx context.Context, bin, dir, name string, workers int, command, latLog string) (*supervisor, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := "tcp://" + l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, name+".rr.yaml")
	yaml := fmt.Sprintf(`version: "3"
rpc: {listen: %q}
server:
  command: %q
  env: {BENCH_LATENCY_LOG: %q}
logs: {level: warn}
jobs:
  pool: {num_workers: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench: {driver: memory}
`, addr, command, latLog, workers)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	sv := &supervisor{cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for {
		cl, err := rpc.Dial(ctx, addr)
		if err == nil {
			sv.cl = cl
			return sv, nil
		}
		if time.Now().After(deadline) {
			sv.kill()
			return nil, fmt.Errorf("supervisor did not start: %w", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *supervisor) waitAcked(ctx context.Context, n uint64) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		st, err := s.cl.Stat(ctx)
		if err != nil {
			return err
		}
		if len(st) == 1 && st[0].Acked >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("jobs were not all acked within 5 minutes")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// cpu is the supervisor's CPU time so far (all threads), from schedstat.
func (s *supervisor) cpu() time.Duration {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", s.cmd.Process.Pid))
	var ns int64
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return time.Duration(ns)
}

// memKB reads a Vm* line of /proc/pid/status in kB.
func (s *supervisor) memKB(key string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, key+":") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return -1
}

func (s *supervisor) stop() {
	s.cl.Close()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	_ = s.cmd.Wait()
}

func (s *supervisor) kill() {
	if s.cmd.ProcessState == nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	}
}

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

func pct(s []time.Duration, p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	i := int(p * float64(len(s)-1))
	return s[i].Round(time.Microsecond)
}
