// Command kafkabench compares the supervisor's kafka driver with a plain
// franz-go consumer doing the same work, end to end against a kfake
// cluster (tests/kfakecmd) with real PHP echo workers.
//
// Each round pushes the same records through the supervisor into the
// topic while its pipeline is paused, then both consume them, in turn
// (the order alternates from round to round), each in its own group: the
// supervisor from the resume, the plain consumer (plain.go, in a process
// of its own) from its go, each until its group's committed offsets reach
// the end of every partition. It prints each round, then the median
// jobs/s of each, the ratio supervisor/plain, and the CPU µs per record
// of the supervisor and of the plain consumer's process.
// bench/kafka.sh builds the binaries and runs it.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
	"github.com/pipevisor/pipevisor/consumer"
)

// params are the command line.
type params struct {
	bin, kfake   string
	jobs, batch  int
	rounds       int
	workers      int
	pipelining   int
	partitions   int
	keys         int
	ordering     string
	payloadBytes int
	timeout      time.Duration
	trace        bool
	cpuprofile   string
	plainProfile string
	command      string
}

func main() {
	var p params
	var child bool
	var brokers, topic, group string
	flag.StringVar(&p.bin, "bin", "bin/supervisor", "supervisor binary")
	flag.StringVar(&p.kfake, "kfake", "bin/kfakecmd", "kfakecmd binary")
	flag.IntVar(&p.jobs, "jobs", 50000, "jobs to push and consume a round")
	flag.IntVar(&p.batch, "batch", 1000, "jobs per PushBatch")
	flag.IntVar(&p.rounds, "rounds", 5, "rounds; the median is reported")
	flag.IntVar(&p.workers, "workers", 2, "PHP worker processes")
	flag.IntVar(&p.pipelining, "pipelining", 1, "jobs.pool.pipelining: jobs written to a worker ahead of its replies")
	flag.IntVar(&p.partitions, "partitions", 4, "partitions of the topic")
	flag.IntVar(&p.keys, "keys", 1024, "distinct job keys, spread over the partitions by hash (1 = one hot partition)")
	flag.StringVar(&p.ordering, "ordering", "partition", "pipeline ordering: partition or key")
	flag.IntVar(&p.payloadBytes, "payload", 32, "payload size in bytes")
	flag.DurationVar(&p.timeout, "timeout", 10*time.Minute, "give up after this long")
	flag.BoolVar(&p.trace, "trace", false, "print the acked count every 100ms to stderr while the supervisor consumes")
	flag.StringVar(&p.cpuprofile, "cpuprofile", "", "write the supervisor's CPU profile (whole run) to this file")
	flag.StringVar(&p.plainProfile, "plain-cpuprofile", "", "write the plain consumer's CPU profile (whole run) to this file")
	flag.StringVar(&p.command, "command", "php examples/echo-worker.php", "worker command of both")
	flag.BoolVar(&child, "plain-child", false, "run as the plain consumer (internal)")
	flag.StringVar(&brokers, "brokers", "", "plain consumer: seed brokers (internal)")
	flag.StringVar(&topic, "topic", "bench", "plain consumer: topic (internal)")
	flag.StringVar(&group, "group", "plain", "plain consumer: group (internal)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	var err error
	if child {
		err = runPlainChild(ctx, plainConfig{
			brokers: strings.Split(brokers, ","), topic: topic, group: group,
			workers: p.workers, depth: max(1, p.pipelining), ordering: p.ordering,
			command: strings.Fields(p.command), pipeline: "bench", drv: "kafka",
		}, p.plainProfile)
	} else {
		err = run(ctx, p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "kafkabench:", err)
		os.Exit(1)
	}
}

// side is one consumer's results over the rounds.
type side struct {
	rates []float64 // jobs/s of each round
	cpu   []float64 // CPU µs per record of each round
}

func (s *side) add(jobs int, took, cpu time.Duration) {
	s.rates = append(s.rates, float64(jobs)/took.Seconds())
	s.cpu = append(s.cpu, float64(cpu.Microseconds())/float64(jobs))
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func run(ctx context.Context, p params) error {
	dir, err := os.MkdirTemp("", "kafkabench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p.rounds = max(1, p.rounds)
	p.pipelining = max(1, p.pipelining)

	kf, brokers, err := startKfake(ctx, p.kfake, fmt.Sprintf("bench:%d", p.partitions))
	if err != nil {
		return err
	}
	defer kf.Stop()
	var args []string
	if p.cpuprofile != "" {
		args = []string{"--cpuprofile", p.cpuprofile}
	}
	sv, err := benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: p.bin, Dir: dir, Command: p.command, Args: args,
		Body: fmt.Sprintf(`kafka: {brokers: ["%s"]}
jobs:
  pool: {num_workers: %d, pipelining: %d, allocate_timeout: 10s, destroy_timeout: 5s}
  consume: []
  pipelines:
    bench:
      driver: kafka
      config:
        ordering: %s
        consumer_options: {topics: [bench]}
        group_options: {group_id: bench}
`, strings.Join(brokers, `", "`), p.workers, p.pipelining, p.ordering),
	})
	if err != nil {
		return err
	}
	defer sv.Stop()
	plain, err := startPlain(ctx, plainConfig{
		brokers: brokers, topic: "bench", group: "plain",
		workers: p.workers, depth: p.pipelining, ordering: p.ordering,
		command: strings.Fields(p.command),
	}, p.plainProfile)
	if err != nil {
		return fmt.Errorf("plain consumer: %w", err)
	}
	defer plain.stop()
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer admin.Close()

	fmt.Printf("kafka (kfake, %d partitions, %d keys, ordering %s), %d PHP echo workers, pipelining %d, %d jobs of %d bytes a round\n",
		p.partitions, p.keys, p.ordering, p.workers, p.pipelining, p.jobs, p.payloadBytes)
	payload := []byte(strings.Repeat("x", p.payloadBytes))
	var sup, pl side
	var pushRates []float64
	for round := range p.rounds {
		// Fill: the pipeline is paused (not in jobs.consume), so pushes
		// only produce; the plain consumer is not polling.
		t0 := time.Now()
		err = benchkit.PushAll(ctx, sv.Client, p.jobs, p.batch, func(i int) consumer.Job {
			return consumer.Job{ID: fmt.Sprintf("%d-%d", round, i), Name: "Bench", Pipeline: "bench", Payload: payload, Key: "k" + strconv.Itoa(i%p.keys)}
		})
		if err != nil {
			return err
		}
		pushRates = append(pushRates, float64(p.jobs)/time.Since(t0).Seconds())
		total := int64(p.jobs) * int64(round+1)
		order := []bool{true, false} // plain first
		if round%2 == 1 {
			order = []bool{false, true}
		}
		for _, isPlain := range order {
			if isPlain {
				took, cpu, err := plainRound(ctx, plain, admin, int32(p.partitions), total)
				if err != nil {
					return fmt.Errorf("plain consumer: %w", err)
				}
				pl.add(p.jobs, took, cpu)
				fmt.Printf("round %d plain franz-go: %8.0f jobs/s  %6.2f µs CPU/record\n", round+1, pl.rates[round], pl.cpu[round])
				continue
			}
			took, cpu, err := supervisorRound(ctx, sv, admin, int32(p.partitions), total, p.trace)
			if err != nil {
				return err
			}
			sup.add(p.jobs, took, cpu)
			fmt.Printf("round %d supervisor:     %8.0f jobs/s  %6.2f µs CPU/record\n", round+1, sup.rates[round], sup.cpu[round])
		}
	}
	ms, mp := median(sup.rates), median(pl.rates)
	fmt.Printf("push (PushBatch(%d), acks=all): %.0f jobs/s (median)\n", p.batch, median(pushRates))
	fmt.Printf("supervisor consume+commit:       %8.0f jobs/s (median of %d; %.0f-%.0f)\n", ms, p.rounds, slices.Min(sup.rates), slices.Max(sup.rates))
	fmt.Printf("plain franz-go, same PHP work:   %8.0f jobs/s (median of %d; %.0f-%.0f)\n", mp, p.rounds, slices.Min(pl.rates), slices.Max(pl.rates))
	ratios := make([]float64, len(sup.rates))
	for i := range ratios {
		ratios[i] = sup.rates[i] / pl.rates[i]
	}
	fmt.Printf("supervisor/plain: %.2f (ratio of the medians; median of the rounds' ratios %.2f)\n", ms/mp, median(ratios))
	fmt.Printf("supervisor CPU: %.2f µs/record (median)\n", median(sup.cpu))
	fmt.Printf("plain consumer CPU: %.2f µs/record (median)\n", median(pl.cpu))
	return nil
}

// plainRound lets the plain consumer consume up to total records and
// returns the time until its group committed them all and its CPU time.
func plainRound(ctx context.Context, plain *plainProc, admin *kgo.Client, partitions int32, total int64) (time.Duration, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
	watched := make(chan struct{})
	defer func() { cancel(); <-watched }()
	go func() { // ends this round's wait if the child exits; ends with the round
		defer close(watched)
		select {
		case <-plain.Exited():
			cancel()
		case <-ctx.Done():
		}
	}()
	cpu0 := plain.CPU()
	t0 := time.Now()
	if err := plain.consumeUpTo(total); err != nil {
		return 0, 0, err
	}
	if err := waitCommitted(ctx, admin, "plain", "bench", partitions, total); err != nil {
		select {
		case <-plain.Exited():
			return 0, 0, errors.New("the plain consumer exited")
		default:
		}
		return 0, 0, err
	}
	return time.Since(t0), plain.CPU() - cpu0, nil
}

// supervisorRound resumes the pipeline until its group committed total
// records, pauses it again and returns the time from the resume to the
// last commit and the supervisor's CPU time meanwhile.
func supervisorRound(ctx context.Context, sv *benchkit.Supervisor, admin *kgo.Client, partitions int32, total int64, trace bool) (time.Duration, time.Duration, error) {
	cpu0 := sv.CPU()
	t0 := time.Now()
	if err := sv.Client.Resume(ctx, "bench"); err != nil {
		return 0, 0, fmt.Errorf("resume: %w", err)
	}
	if trace {
		if err := sv.WaitAcked(ctx, uint64(total), 5*time.Millisecond, traceAcked(true)); err != nil {
			return 0, 0, err
		}
	}
	if err := waitCommitted(ctx, admin, "bench", "bench", partitions, total); err != nil {
		return 0, 0, err
	}
	took, cpu := time.Since(t0), sv.CPU()-cpu0
	if err := sv.Client.Pause(ctx, "bench"); err != nil {
		return 0, 0, fmt.Errorf("pause: %w", err)
	}
	return took, cpu, nil
}

// startKfake runs kfakecmd with one topic and returns its brokers.
func startKfake(ctx context.Context, bin, topic string) (*benchkit.Proc, []string, error) {
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
	p, err := benchkit.StartProc(cmd)
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
			p.Stop()
			return nil, nil, errors.New("kfakecmd printed no address")
		}
		return p, strings.Split(l, ","), nil
	case <-ctx.Done():
		p.Stop() // EOF on its stdout ends the reader
		<-line
		return nil, nil, ctx.Err()
	}
}

// traceAcked returns a WaitAcked progress that prints the elapsed time
// and the counts every 100ms to stderr when on, or nil.
func traceAcked(on bool) func(consumer.Stat) {
	if !on {
		return nil
	}
	t0, last := time.Now(), time.Now()
	return func(st consumer.Stat) {
		if time.Since(last) < 100*time.Millisecond {
			return
		}
		last = time.Now()
		fmt.Fprintf(os.Stderr, "%6dms acked %d active %d ready %d\n", time.Since(t0).Milliseconds(), st.Acked, st.Active, st.Ready)
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
			return fmt.Errorf("%w: %d of %d offsets committed", benchkit.ErrTimeout, sum, n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}
