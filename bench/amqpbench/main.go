// Command amqpbench measures consume+ack throughput of the supervisor on
// the amqp driver with real PHP echo workers (examples/echo-worker.php),
// next to a plain amqp091-go consumer that does the same work per message
// (plain.go: manual acks, the same prefetch, each message run on one of
// the same number of PHP echo workers over the same goridge pipes, with
// the same pipelining) on the same queue, for each -pipelining value
// (default 1 and 8) with a supervisor of its own, at -prefetch (default
// 100) and otherwise default settings (one pipeline slot per worker).
//
// Each round fills the queue with -jobs jobs pushed through the supervisor
// (PushBatch, confirmed) while its pipeline is paused, then empties it
// either by resuming the pipeline (timed from the resume until jobs stat
// counts every job acked) or with the plain consumer (timed from
// basic.consume until the last basic.ack was written). Rounds alternate
// plain and supervisor so neither gets the broker's warm-up alone. The
// plain consumer runs in a process of its own (this program with
// -plain-child), so the CPU time of each is measured alike. It prints
// jobs/s of both, supervisor/plain and the CPU µs per job of both (the
// process's CPU time while it consumed, over the jobs), and with
// -cpuprofile writes the CPU profile of both (".plain" added to the
// plain consumer's file name).
// bench/amqp.sh builds the supervisor and runs it.
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
)

// params are the command line.
type params struct {
	bin, addr    string
	jobs, batch  int
	workers      int
	concurrency  int
	pipelining   string
	prefetch     int
	cpuprofile   string
	rounds       int
	payloadBytes int
	timeout      time.Duration
	// plain child (child.go)
	plainChild      bool
	queue, command  string
	plainCPUProfile string
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
	flag.IntVar(&p.concurrency, "concurrency", 0, "pipeline concurrency (0: the default, one slot per worker)")
	flag.StringVar(&p.pipelining, "pipelining", "1,8", "jobs.pool.pipelining values to run, comma-separated: jobs written to a worker ahead of its replies")
	flag.IntVar(&p.prefetch, "prefetch", 100, "prefetch of the pipeline and of the plain consumer")
	flag.StringVar(&p.cpuprofile, "cpuprofile", "", "write the supervisor's CPU profile to this file (the pipelining value is added to the name)")
	flag.IntVar(&p.rounds, "rounds", 3, "rounds of each consumer (alternating)")
	flag.IntVar(&p.payloadBytes, "payload", 32, "payload size in bytes")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.BoolVar(&p.plainChild, "plain-child", false, "run as the plain consumer's process (internal)")
	flag.StringVar(&p.queue, "queue", "", "queue of the plain consumer (with -plain-child)")
	flag.StringVar(&p.command, "command", "php examples/echo-worker.php", "worker command")
	flag.StringVar(&p.plainCPUProfile, "plain-cpuprofile", "", "CPU profile of the plain consumer (with -plain-child)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if p.plainChild {
		depth, err := strconv.Atoi(p.pipelining)
		if err == nil {
			err = runPlainChild(ctx, plainConfig{
				addr: p.addr, queue: p.queue, prefetch: p.prefetch, workers: p.workers,
				depth: depth, command: strings.Fields(p.command),
			}, p.plainCPUProfile)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "amqpbench plain consumer:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(ctx, p); err != nil {
		fmt.Fprintln(os.Stderr, "amqpbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, p params) error {
	var levels []int
	for _, f := range strings.Split(p.pipelining, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return fmt.Errorf("-pipelining %q: want comma-separated numbers of at least 1", p.pipelining)
		}
		levels = append(levels, n)
	}
	if p.jobs < 1 || p.batch < 1 || p.workers < 1 || p.concurrency < 0 || p.prefetch < 1 || p.rounds < 1 {
		return errors.New("-jobs, -batch, -workers, -prefetch and -rounds must be at least 1, -concurrency at least 0")
	}
	var results []result
	for _, pl := range levels {
		r, err := runLevel(ctx, p, pl)
		if err != nil {
			return fmt.Errorf("pipelining %d: %w", pl, err)
		}
		results = append(results, r)
	}
	conc := "default (one per worker)"
	if p.concurrency > 0 {
		conc = strconv.Itoa(p.concurrency)
	}
	fmt.Printf("\namqp driver, classic queue, prefetch %d, concurrency %s, %d PHP echo workers, %d rounds of %d jobs of %d bytes\n",
		p.prefetch, conc, p.workers, p.rounds, p.jobs, p.payloadBytes)
	fmt.Printf("%-11s %14s %14s %17s %16s %16s\n", "pipelining", "plain jobs/s", "supervisor", "supervisor/plain", "CPU µs/job", "plain CPU µs/job")
	for _, r := range results {
		fmt.Printf("%-11d %14.0f %14.0f %17.2f %16.1f %16.1f\n", r.pipelining, r.plain, r.supervisor, r.supervisor/r.plain, r.cpuPerJob, r.plainCPUPerJob)
	}
	return nil
}

// result is one pipelining level's numbers.
type result struct {
	pipelining                   int
	plain, supervisor, cpuPerJob float64
	plainCPUPerJob               float64
}

// runLevel starts a supervisor with jobs.pool.pipelining pl and runs the
// alternating rounds against the plain consumer.
func runLevel(ctx context.Context, p params, pl int) (result, error) {
	dir, err := os.MkdirTemp("", "amqpbench-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	queue := "pv-bench." + strings.ToLower(rand.Text()[:8])

	conn, err := amqp.DialConfig(p.addr, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return result{}, fmt.Errorf("RabbitMQ: %w", err)
	}
	defer conn.Close()
	defer deleteQueue(conn, queue)

	conc := ""
	if p.concurrency > 0 {
		conc = fmt.Sprintf("\n      concurrency: %d", p.concurrency)
	}
	var args []string
	plainProfile := ""
	if p.cpuprofile != "" {
		args = []string{"--cpuprofile", fmt.Sprintf("%s.p%d", p.cpuprofile, pl)}
		plainProfile = fmt.Sprintf("%s.p%d.plain", p.cpuprofile, pl)
	}
	sv, err := benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: p.bin, Dir: dir, Command: p.command, Ready: benchkit.Consuming, Args: args,
		Body: fmt.Sprintf(`amqp: {addr: %q}
jobs:
  pool: {num_workers: %d, pipelining: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench:
      driver: amqp%s
      config: {queue: %q, prefetch: %d}
`, p.addr, p.workers, pl, conc, queue, p.prefetch),
	})
	if err != nil {
		return result{}, err
	}
	defer sv.Stop()
	pp, err := startPlain(ctx, plainConfig{
		addr: p.addr, queue: queue, prefetch: p.prefetch, workers: p.workers,
		depth: pl, command: strings.Fields(p.command),
	}, plainProfile)
	if err != nil {
		return result{}, err
	}
	defer pp.stop()
	var plainCPU time.Duration
	fmt.Printf("pipelining %d:\n", pl)
	res, err := benchkit.Rounds{
		Supervisor: sv, Rounds: p.rounds, Jobs: p.jobs, Batch: p.batch,
		Payload: []byte(strings.Repeat("x", p.payloadBytes)), Poll: 2 * time.Millisecond,
		PlainName: "plain amqp091-go",
		Pause: func(ctx context.Context) error {
			if err := sv.Client.Pause(ctx, "bench"); err != nil {
				return fmt.Errorf("pause: %w", err)
			}
			return nil
		},
		Filled: func(context.Context) error {
			if n, err := ready(conn, queue); err != nil || n != p.jobs {
				return fmt.Errorf("queue %s holds %d messages after the fill, want %d (%v)", queue, n, p.jobs, err)
			}
			return nil
		},
		Plain: func(ctx context.Context) (time.Duration, error) {
			took, cpu, err := pp.consume(ctx, p.jobs)
			plainCPU += cpu
			return took, err
		},
		Drained: func(context.Context) error {
			if n, err := ready(conn, queue); err != nil || n != 0 {
				return fmt.Errorf("queue %s holds %d messages after the supervisor acked every job (%v)", queue, n, err)
			}
			return nil
		},
	}.Run(ctx)
	if err != nil {
		return result{}, err
	}
	total := float64(p.jobs * p.rounds)
	return result{
		pipelining: pl,
		plain:      total / res.Plain.Seconds(),
		supervisor: total / res.Supervisor.Seconds(),
		cpuPerJob:  float64(res.CPU.Microseconds()) / total,

		plainCPUPerJob: float64(plainCPU.Microseconds()) / total,
	}, nil
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
