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
	"os"
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
	pipelining   int
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
	flag.IntVar(&p.concurrency, "concurrency", 8, "pipeline concurrency; times -pipelining, the prefetch of both consumers")
	flag.IntVar(&p.pipelining, "pipelining", 1, "jobs.pool.pipelining: jobs written to a worker ahead of its replies")
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
	if p.jobs < 1 || p.batch < 1 || p.workers < 1 || p.concurrency < 1 || p.pipelining < 1 || p.rounds < 1 {
		return errors.New("-jobs, -batch, -workers, -concurrency, -pipelining and -rounds must be at least 1")
	}
	prefetch := p.concurrency * p.pipelining
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

	sv, err := benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: p.bin, Dir: dir, Command: "php examples/echo-worker.php", Ready: benchkit.Consuming,
		Body: fmt.Sprintf(`amqp: {addr: %q}
jobs:
  pool: {num_workers: %d, pipelining: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: [bench]
  pipelines:
    bench:
      driver: amqp
      concurrency: %d
      config: {queue: %q, prefetch: %d}
`, p.addr, p.workers, p.pipelining, p.concurrency, queue, prefetch),
	})
	if err != nil {
		return err
	}
	defer sv.Stop()
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
			return consumePlain(ctx, conn, queue, prefetch, p.jobs)
		},
		Drained: func(context.Context) error {
			if n, err := ready(conn, queue); err != nil || n != 0 {
				return fmt.Errorf("queue %s holds %d messages after the supervisor acked every job (%v)", queue, n, err)
			}
			return nil
		},
	}.Run(ctx)
	if err != nil {
		return err
	}

	total := float64(p.jobs * p.rounds)
	plainRate, svRate := total/res.Plain.Seconds(), total/res.Supervisor.Seconds()
	fmt.Printf("amqp driver, classic queue, concurrency %d, pipelining %d, prefetch %d, %d PHP echo workers, %d rounds of %d jobs of %d bytes\n",
		p.concurrency, p.pipelining, prefetch, p.workers, p.rounds, p.jobs, p.payloadBytes)
	fmt.Printf("plain amqp091-go consumer (manual ack): %.0f jobs/s\n", plainRate)
	fmt.Printf("supervisor + PHP echo workers:          %.0f jobs/s\n", svRate)
	fmt.Printf("supervisor/plain: %.2f\n", svRate/plainRate)
	fmt.Printf("supervisor CPU while consuming: %.2f µs/job\n", float64(res.CPU.Microseconds())/total)
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
			return 0, fmt.Errorf("%w in the plain round", benchkit.ErrTimeout)
		}
	}
	return time.Since(start), nil
}
