// Command kafkabench measures the supervisor end to end on the kafka driver
// with real PHP echo workers against a kfake cluster (tests/kfakecmd): it
// pushes the jobs through the supervisor while the pipeline is not consumed,
// then resumes it and times consume+commit, from the resume until every
// job is acked and the group's committed offsets reached the end of every
// partition. bench/kafka.sh builds the binaries and runs it.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc"
)

// errTimeout is returned when the run does not finish within -timeout.
var errTimeout = errors.New("kafkabench: timed out")

// params are the command line.
type params struct {
	bin, kfake   string
	jobs, batch  int
	workers      int
	partitions   int
	keys         int
	ordering     string
	payloadBytes int
	timeout      time.Duration
	trace        bool
}

func main() {
	var p params
	flag.StringVar(&p.bin, "bin", "bin/supervisor", "supervisor binary")
	flag.StringVar(&p.kfake, "kfake", "bin/kfakecmd", "kfakecmd binary")
	flag.IntVar(&p.jobs, "jobs", 50000, "jobs to push and consume")
	flag.IntVar(&p.batch, "batch", 1000, "jobs per PushBatch")
	flag.IntVar(&p.workers, "workers", 2, "PHP worker processes")
	flag.IntVar(&p.partitions, "partitions", 4, "partitions of the topic")
	flag.IntVar(&p.keys, "keys", 1024, "distinct job keys, spread over the partitions by hash (1 = one hot partition)")
	flag.StringVar(&p.ordering, "ordering", "partition", "pipeline ordering: partition or key")
	flag.IntVar(&p.payloadBytes, "payload", 32, "payload size in bytes")
	flag.DurationVar(&p.timeout, "timeout", 5*time.Minute, "give up after this long")
	flag.BoolVar(&p.trace, "trace", false, "print the acked count every 100ms to stderr while consuming")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if err := run(ctx, p); err != nil {
		fmt.Fprintln(os.Stderr, "kafkabench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, p params) error {
	dir, err := os.MkdirTemp("", "kafkabench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	kf, brokers, err := startKfake(ctx, p.kfake, fmt.Sprintf("bench:%d", p.partitions))
	if err != nil {
		return err
	}
	defer kf.stop()
	sv, err := startSupervisor(ctx, p, dir, brokers)
	if err != nil {
		return err
	}
	defer sv.stop()
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer admin.Close()

	// Fill: the pipeline is not in jobs.consume, so pushes only produce.
	payload := []byte(strings.Repeat("x", p.payloadBytes))
	t0 := time.Now()
	for pushed := 0; pushed < p.jobs; pushed += p.batch {
		js := make([]consumer.Job, min(p.batch, p.jobs-pushed))
		for i := range js {
			id := strconv.Itoa(pushed + i)
			js[i] = consumer.Job{ID: id, Name: "Bench", Pipeline: "bench", Payload: payload, Key: "k" + strconv.Itoa((pushed+i)%p.keys)}
		}
		if err := sv.cl.PushBatch(ctx, js); err != nil {
			return fmt.Errorf("push: %w", err)
		}
	}
	pushTook := time.Since(t0)

	// Consume + commit.
	cpu0 := sv.cpu()
	t1 := time.Now()
	if err := sv.cl.Resume(ctx, "bench"); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := waitAcked(ctx, sv.cl, uint64(p.jobs), p.trace); err != nil {
		return err
	}
	ackTook := time.Since(t1)
	if err := waitCommitted(ctx, admin, "bench", "bench", int32(p.partitions), int64(p.jobs)); err != nil {
		return err
	}
	took := time.Since(t1)
	cpu := sv.cpu() - cpu0

	fmt.Printf("kafka driver (kfake, %d partitions, %d keys, ordering %s), %d PHP echo workers, %d jobs of %d bytes\n",
		p.partitions, p.keys, p.ordering, p.workers, p.jobs, p.payloadBytes)
	fmt.Printf("push (PushBatch(%d), acks=all): %.0f jobs/s (%s)\n", p.batch, float64(p.jobs)/pushTook.Seconds(), pushTook.Round(time.Millisecond))
	fmt.Printf("consume+commit: %.0f jobs/s (resume to last commit %s; to last ack %s)\n",
		float64(p.jobs)/took.Seconds(), took.Round(time.Millisecond), ackTook.Round(time.Millisecond))
	fmt.Printf("supervisor CPU while consuming: %.2f µs/job\n", float64(cpu.Microseconds())/float64(p.jobs))
	return nil
}

// proc is a child process stopped by signal, then killed.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func startProc(cmd *exec.Cmd) (*proc, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() { // owned by stop, which waits for exited
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// startKfake runs kfakecmd with one topic and returns its brokers.
func startKfake(ctx context.Context, bin, topic string) (*proc, []string, error) {
	cmd := exec.Command(bin, "-topic", topic)
	cmd.Stderr = os.Stderr
	// kfakecmd stops at EOF on stdin: hold the pipe open until stop (the
	// pipe's write end is closed by os/exec when the process is waited).
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	p, err := startProc(cmd)
	if err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	line := make(chan string, 1)
	go func() { // ends at the first line or EOF; both paths below receive from line
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
	}()
	select {
	case l := <-line:
		if l == "" {
			p.stop()
			return nil, nil, errors.New("kfakecmd printed no address")
		}
		return p, strings.Split(l, ","), nil
	case <-ctx.Done():
		p.stop() // EOF on its stdout ends the reader
		<-line
		return nil, nil, ctx.Err()
	}
}

type supervisor struct {
	*proc
	cl *rpc.Client
}

func (s *supervisor) stop() {
	s.cl.Close()
	s.proc.stop()
}

func startSupervisor(ctx context.Context, p params, dir string, brokers []string) (*supervisor, error) {
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
kafka: {brokers: ["%s"]}
jobs:
  pool: {num_workers: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: []
  pipelines:
    bench:
      driver: kafka
      config:
        ordering: %s
        consumer_options: {topics: [bench]}
        group_options: {group_id: bench}
`, addr, strings.Join(brokers, `", "`), p.workers, p.ordering)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(p.bin, "serve", "-c", cfg)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	pr, err := startProc(cmd)
	if err != nil {
		return nil, err
	}
	for {
		cl, err := rpc.Dial(ctx, addr)
		if err == nil {
			if _, err = cl.Stat(ctx); err == nil {
				return &supervisor{proc: pr, cl: cl}, nil
			}
			cl.Close()
		}
		select {
		case <-pr.exited:
			return nil, errors.New("supervisor exited during start")
		case <-ctx.Done():
			pr.stop()
			return nil, fmt.Errorf("supervisor did not start: %w", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// waitAcked polls Stat until n jobs are acked; with trace it prints the
// elapsed time and acked count every 100ms to stderr.
func waitAcked(ctx context.Context, cl *rpc.Client, n uint64, trace bool) error {
	t0, last := time.Now(), time.Now()
	for {
		st, err := cl.Stat(ctx)
		if err != nil {
			return err
		}
		if trace && time.Since(last) >= 100*time.Millisecond && len(st) == 1 {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "%6dms acked %d active %d ready %d\n", time.Since(t0).Milliseconds(), st[0].Acked, st[0].Active, st[0].Ready)
		}
		if len(st) == 1 && st[0].Acked >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w waiting for %d acks", errTimeout, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// waitCommitted waits until the committed offsets of group on topic add
// up to n.
func waitCommitted(ctx context.Context, cl *kgo.Client, group, topic string, partitions int32, n int64) error {
	for {
		req := kmsg.NewPtrOffsetFetchRequest()
		req.Group = group
		rt := kmsg.NewOffsetFetchRequestTopic()
		rt.Topic = topic
		for p := range partitions {
			rt.Partitions = append(rt.Partitions, p)
		}
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl)
		if err != nil {
			return fmt.Errorf("offset fetch: %w", err)
		}
		var sum int64
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				sum += max(p.Offset, 0)
			}
		}
		if sum >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %d of %d offsets committed", errTimeout, sum, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// cpu is the process's CPU time so far (all threads), from schedstat.
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
