package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
	"github.com/pipevisor/pipevisor/frame"
)

// The plain consumer is what a user would write instead of the
// supervisor's amqp driver, doing the same work per message: an amqp091-go
// consumer with manual acks and basic.qos prefetch hands each delivery to
// one of the same PHP echo workers over the same goridge pipe protocol
// (job context JSON with id, job, headers and attempt read from the
// message as the driver writes them; the body as the job's body), with
// the same number of workers and the same pipelining (up to depth jobs
// written to a worker ahead of its replies: those on offer when the
// worker is written to), and acks each message on its own (basic.ack,
// multiple=false) once its worker acked it.

// plainConfig configures a plain consumer.
type plainConfig struct {
	addr, queue string
	prefetch    int
	workers     int
	depth       int // jobs written to a worker ahead of its replies
	command     []string
}

// plainConsumer is a plain consumer's connection and workers.
type plainConsumer struct {
	cfg     plainConfig
	conn    *amqp.Connection
	workers []*benchkit.PHPWorker
}

// newPlainConsumer connects and starts the workers. The caller must call
// close.
func newPlainConsumer(ctx context.Context, cfg plainConfig) (*plainConsumer, error) {
	conn, err := amqp.DialConfig(cfg.addr, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return nil, fmt.Errorf("RabbitMQ: %w", err)
	}
	p := &plainConsumer{cfg: cfg, conn: conn}
	for range cfg.workers {
		w, err := benchkit.StartPHPWorker(ctx, cfg.command)
		if err != nil {
			p.close()
			return nil, err
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

// close stops the workers and closes the connection.
func (p *plainConsumer) close() {
	for _, w := range p.workers {
		w.Stop()
	}
	_ = p.conn.Close()
}

// consume consumes n messages of the queue on a channel of its own and
// returns the time from basic.consume to the last ack.
func (p *plainConsumer) consume(ctx context.Context, n int) (time.Duration, error) {
	ch, err := p.conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("open channel: %w", err)
	}
	defer ch.Close()
	if err := ch.Qos(p.cfg.prefetch, 0, false); err != nil {
		return 0, fmt.Errorf("basic.qos: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	msgs, err := ch.Consume(p.cfg.queue, "plain", false, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("basic.consume: %w", err)
	}
	q := &quota{n: int64(n)}
	var wg sync.WaitGroup
	errs := make([]error, len(p.workers))
	for i, w := range p.workers {
		wg.Go(func() {
			if errs[i] = p.work(ctx, w, msgs, q); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	took := time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	if err := ch.Cancel("plain", false); err != nil {
		return 0, fmt.Errorf("basic.cancel: %w", err)
	}
	return took, nil
}

// quota hands out the n messages of a round to the workers.
type quota struct {
	taken atomic.Int64
	n     int64
}

// claim reserves one more message; false when all n are reserved.
func (q *quota) claim() bool {
	if q.taken.Add(1) <= q.n {
		return true
	}
	q.taken.Add(-1)
	return false
}

// unclaim gives back a reservation that found no delivery.
func (q *quota) unclaim() { q.taken.Add(-1) }

// work runs deliveries of msgs on w until claim says every message is
// taken and w's jobs are done: it waits for a delivery only while w has
// none running, takes the deliveries on offer up to depth running,
// writes their frames in one write, then reads one reply and acks its
// delivery.
func (p *plainConsumer) work(ctx context.Context, w *benchkit.PHPWorker, msgs <-chan amqp.Delivery, q *quota) error {
	var (
		running []amqp.Delivery
		buf     []byte
		cbuf    []byte
		more    = true
	)
	errClosed := errors.New("plain consumer: deliveries channel closed")
	for more || len(running) > 0 {
		start := len(running)
		buf = buf[:0]
	take:
		for more && len(running) < p.cfg.depth {
			if !q.claim() {
				more = false
				break
			}
			var (
				m  amqp.Delivery
				ok bool
			)
			if len(running) == 0 {
				select {
				case m, ok = <-msgs:
				case <-ctx.Done():
					return ctx.Err()
				}
			} else {
				var offered bool
				if m, ok, offered = poll(msgs); !offered {
					// amqp091's buffer goroutine offers its next
					// delivery only once it has run again: let it,
					// as the driver does, then look once more.
					runtime.Gosched()
					m, ok, offered = poll(msgs)
				}
				if !offered {
					q.unclaim()
					break take // nothing on offer: run what w has
				}
			}
			if !ok {
				return errClosed
			}
			running = append(running, m)
			cbuf = frame.AppendJobContext(cbuf, jobMeta(&m, p.cfg.queue))
			buf = frame.AppendFrame(buf, frame.FlagCodecRaw, []uint32{uint32(len(cbuf))}, cbuf, m.Body)
		}
		if len(running) > start {
			if err := w.Write(buf); err != nil {
				return err
			}
		}
		if len(running) == 0 {
			continue
		}
		if err := w.ReadAck(); err != nil {
			return err
		}
		if err := running[0].Ack(false); err != nil {
			return fmt.Errorf("basic.ack: %w", err)
		}
		running = append(running[:0], running[1:]...)
	}
	return nil
}

// poll reads msgs without waiting; offered is false when nothing is on
// offer.
func poll(msgs <-chan amqp.Delivery) (m amqp.Delivery, ok, offered bool) {
	select {
	case m, ok = <-msgs:
		return m, ok, true
	default:
		return m, false, false
	}
}

// jobMeta reads the job context of m from the headers the driver's
// Publish writes: rr_id, rr_job, rr_pipeline, rr_headers (JSON) and
// x-attempt.
func jobMeta(m *amqp.Delivery, queue string) *frame.JobMeta {
	jm := &frame.JobMeta{Driver: "amqp", Queue: queue, Attempt: 1}
	jm.ID, _ = m.Headers["rr_id"].(string)
	jm.Job, _ = m.Headers["rr_job"].(string)
	jm.Pipeline, _ = m.Headers["rr_pipeline"].(string)
	if a, ok := m.Headers["x-attempt"].(int64); ok {
		jm.Attempt = int(a)
	}
	if m.Redelivered {
		jm.Attempt++
	}
	if b, ok := m.Headers["rr_headers"].([]byte); ok && len(b) > 2 {
		_ = json.Unmarshal(b, &jm.Headers)
	}
	return jm
}
