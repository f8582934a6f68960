// Command amqpbench measures consume+ack throughput of the supervisor on
// the amqp driver with real PHP echo workers (examples/echo-worker.php),
// next to a plain amqp091-go consumer (manual ack, the same prefetch) on
// the same queue.
//
// Each round fills the queue with -jobs jobs pushed through the supervisor
// (PushBatch, confirmed) while its pipeline is paused, then empties it
// either by resuming the pipeline (timed from the resume until jobs stat
// counts every job acked) or with the plain consumer (timed from
// basic.consume until the last basic.ack was written and the queue is
// empty). Rounds alternate plain and supervisor so neither gets the
// broker's warm-up alone. It prints jobs/s of both and supervisor/plain.
// bench/amqp.sh builds the supervisor and runs it.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// errTimeout is returned when the run does not finish within -timeout.
var errTimeout = errors.New("amqpbench: timed out")

// params are the command line.
type params struct {
	bin, addr    string
	jobs, batch  int
	workers      int
	concurrency  int
	rounds       int
	payloadBytes int
	timeout      time.Duration
}

func main() {
	var p params
	addr := os.Getenv("SUPERVISOR_AMQP_URL")
	if addr == "" {
		addr = "amqp://guest:guest@127.0.0.1:5672/"
	}
	flag.StringVar(&p.bin, "bin", "bin/supervisor", "supervisor binary")
	flag.StringVar(&p.addr, "addr", addr, "RabbitMQ URL (default $SUPERVISOR_AMQP_URL or the local broker)")
	flag.IntVar(&p.jobs, "jobs", 20000, "jobs per round")
	flag.IntVar(&p.batch, "batch", 1000, "jobs per PushBatch when filling the queue")
	flag.IntVar(&p.workers, "workers", 2, "PHP worker processes")
	flag.IntVar(&p.concurrency, "concurrency", 8, "pipeline concurrency, which is also the prefetch of both consumers")
	flag.IntVar(&p.rounds, "rounds", 2, "rounds of each consumer (alternating)")
	flag.IntVar(&p.payloadBytes, "payload", 32, "payload size in bytes")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := run(ctx, p); err != nil {
		fmt.Fprintln(os.Stderr, "amqpbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, p params) error {
	if p.jobs < 1 || p.batch < 1 || p.workers < 1 || p.concurrency < 1 || p.rounds < 1 {
		return errors.New("-jobs, -batch, -workers, -concurrency and -rounds must be at least 1")
	}
	dir, err := os.MkdirTemp("", "amqpbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	queue := "pv-bench." + strings.ToLower(rand.Text()[:8])

	conn, err := amqp.DialConfig(p.addr, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return fmt.Errorf("RabbitMQ: %w", err)
	}
	defer conn.Close()
	defer deleteQueue(conn, queue)

	sv, err := startSupervisor(ctx, p, dir, queue)
	if err != nil {
		return err
	}
	defer sv.stop()
	// Paused from the start: the queue is filled before each round.
	if err := sv.cl.Pause(ctx, "bench"); err != nil {
		return fmt.Errorf("pause: %w", err)
	}

	payload := []byte(strings.Repeat("x", p.payloadBytes))
	var plainTook, svTook time.Duration
	var acked uint64
	var cpu time.Duration
	for r := range p.rounds {
		for _, plain := range []bool{true, false} {
			if err := fill(ctx, sv.cl, p, payload, r, plain); err != nil {
				return err
			}
			if n, err := ready(conn, queue); err != nil || n != p.jobs {
				return fmt.Errorf("queue %s holds %d messages after the fill, want %d (%v)", queue, n, p.jobs, err)
			}
			if plain {
				took, err := consumePlain(ctx, conn, queue, p.concurrency, p.jobs)
				if err != nil {
					return err
				}
				plainTook += took
				fmt.Printf("round %d plain amqp091-go: %8.0f jobs/s\n", r+1, float64(p.jobs)/took.Seconds())
				continue
			}
			cpu0 := sv.cpu()
			took, err := consumeSupervisor(ctx, sv.cl, acked+uint64(p.jobs))
			if err != nil {
				return err
			}
			cpu += sv.cpu() - cpu0
			acked += uint64(p.jobs)
			svTook += took
			fmt.Printf("round %d supervisor:       %8.0f jobs/s\n", r+1, float64(p.jobs)/took.Seconds())
			if err := sv.cl.Pause(ctx, "bench"); err != nil {
				return fmt.Errorf("pause: %w", err)
			}
			if n, err := ready(conn, queue); err != nil || n != 0 {
				return fmt.Errorf("queue %s holds %d messages after the supervisor acked every job (%v)", queue, n, err)
			}
		}
	}

	total := float64(p.jobs * p.rounds)
	plainRate, svRate := total/plainTook.Seconds(), total/svTook.Seconds()
	fmt.Printf("amqp driver, classic queue, prefetch = concurrency = %d, %d PHP echo workers, %d rounds of %d jobs of %d bytes\n",
		p.concurrency, p.workers, p.rounds, p.jobs, p.payloadBytes)
	fmt.Printf("plain amqp091-go consumer (manual ack): %.0f jobs/s\n", plainRate)
	fmt.Printf("supervisor + PHP echo workers:          %.0f jobs/s\n", svRate)
	fmt.Printf("supervisor/plain: %.2f\n", svRate/plainRate)
	fmt.Printf("supervisor CPU while consuming: %.2f µs/job\n", float64(cpu.Microseconds())/total)
	return nil
}

// fill pushes p.jobs jobs through the supervisor into the paused pipeline.
func fill(ctx context.Context, cl *rpc.Client, p params, payload []byte, round int, plain bool) error {
	side := "s"
	if plain {
		side = "p"
	}
	for pushed := 0; pushed < p.jobs; pushed += p.batch {
		js := make([]consumer.Job, min(p.batch, p.jobs-pushed))
		for i := range js {
			js[i] = consumer.Job{ID: fmt.Sprintf("%d%s%d", round, side, pushed+i), Name: "Bench", Pipeline: "bench", Payload: payload}
		}
		if err := cl.PushBatch(ctx, js); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	return nil
}

// ready returns the ready messages of queue (passive queue.declare on a
// channel of its own).
func ready(conn *amqp.Connection, queue string) (int, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(queue, false, false, false, false, nil)
	return q.Messages, err
}

func deleteQueue(conn *amqp.Connection, queue string) {
	ch, err := conn.Channel()
	if err != nil {
		return
	}
	defer ch.Close()
	_, _ = ch.QueueDelete(queue, false, false, false)
}

// consumePlain consumes n messages of queue with manual acks and
// Qos(prefetch), one ack per message, and returns the time from
// basic.consume to the last ack.
func consumePlain(ctx context.Context, conn *amqp.Connection, queue string, prefetch, n int) (time.Duration, error) {
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	defer ch.Close()
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return 0, err
	}
	start := time.Now()
	msgs, err := ch.ConsumeWithContext(ctx, queue, "", false, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	for range n {
		select {
		case m, ok := <-msgs:
			if !ok {
				return 0, errors.New("plain consumer: channel closed")
			}
			if err := m.Ack(false); err != nil {
				return 0, err
			}
		case <-ctx.Done():
			return 0, fmt.Errorf("%w in the plain round", errTimeout)
		}
	}
	return time.Since(start), nil
}

// consumeSupervisor resumes the pipeline and returns the time until jobs
// stat counts want jobs acked in all.
func consumeSupervisor(ctx context.Context, cl *rpc.Client, want uint64) (time.Duration, error) {
	start := time.Now()
	if err := cl.Resume(ctx, "bench"); err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	for {
		st, err := cl.Stat(ctx)
		if err != nil {
			return 0, err
		}
		if len(st) == 1 && st[0].Acked >= want {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%w waiting for %d acks", errTimeout, want)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// supervisor is the running `supervisor serve` and an RPC client to it.
type supervisor struct {
	cmd    *exec.Cmd
	exited chan struct{}
	cl     *rpc.Client
}

// stop closes the client, sends SIGTERM and waits for the exit (SIGKILL
// after 30s).
func (s *supervisor) stop() {
	if s.cl != nil {
		s.cl.Close()
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

// startSupervisor runs the supervisor with one amqp pipeline "bench" on
// queue and waits until the pipeline is consuming.
func startSupervisor(ctx context.Context, p params, dir, queue string) (*supervisor, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := "tcp://" + l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, ".rr.yaml")
	yaml := fmt.Sprintf(`version: "3"
rpc: {listen: %q}
server: {command: "php examples/echo-worker.php"}
logs: {level: warn}
amqp: {addr: %q}
jobs:
  pool: {num_workers: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench:
      driver: amqp
      concurrency: %d
      config: {queue: %q, prefetch: %d}
`, addr, p.addr, p.workers, p.concurrency, queue, p.concurrency)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(p.bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &supervisor{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by stop, which waits for exited
		_ = cmd.Wait()
		close(s.exited)
	}()
	// The RPC answers before the pipelines exist: wait for "bench" to be
	// listed as consuming.
	for {
		cl, err := rpc.Dial(ctx, addr)
		if err == nil {
			st, serr := cl.Stat(ctx)
			if serr == nil && len(st) == 1 && st[0].Consuming {
				s.cl = cl
				return s, nil
			}
			cl.Close()
		}
		select {
		case <-s.exited:
			return nil, errors.New("supervisor exited during start")
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("supervisor did not start: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
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
		if f := strings.Fields(string(b)); len(f) > 0 {
			v, _ := strconv.ParseInt(f[0], 10, 64)
			ns += v
		}
	}
	return time.Duration(ns)
}
