// Command kafkabench measures the supervisor end to end on the kafka driver
// with real PHP echo workers against a kfake cluster (tests/kfakecmd): it
// pushes the jobs through the supervisor while the pipeline is not consumed,
// then times consume+commit of the same records twice: first by a plain
// franz-go consumer in a group of its own that commits the way the driver
// does (auto-commit off, synchronous commits at most every 5ms), from its
// start until its group's committed offsets reached the end of every
// partition; then by the supervisor, from the resume until every job is
// acked and its group's committed offsets reached the end. It prints both
// in jobs/s, supervisor/plain, and the supervisor's CPU µs per job.
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
	defer kf.Stop()
	sv, err := benchkit.StartSupervisor(ctx, benchkit.Config{
		Bin: p.bin, Dir: dir, Command: "php examples/echo-worker.php",
		Body: fmt.Sprintf(`kafka: {brokers: ["%s"]}
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
`, strings.Join(brokers, `", "`), p.workers, p.ordering),
	})
	if err != nil {
		return err
	}
	defer sv.Stop()
	admin, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer admin.Close()

	// Fill: the pipeline is not in jobs.consume, so pushes only produce.
	payload := []byte(strings.Repeat("x", p.payloadBytes))
	t0 := time.Now()
	err = benchkit.PushAll(ctx, sv.Client, p.jobs, p.batch, func(i int) consumer.Job {
		return consumer.Job{ID: strconv.Itoa(i), Name: "Bench", Pipeline: "bench", Payload: payload, Key: "k" + strconv.Itoa(i%p.keys)}
	})
	if err != nil {
		return err
	}
	pushTook := time.Since(t0)

	// The same records, consumed and committed by a plain franz-go client
	// in a group of its own, before the supervisor starts on them.
	plainTook, err := consumePlain(ctx, brokers, "bench", int32(p.partitions), int64(p.jobs), admin)
	if err != nil {
		return fmt.Errorf("plain franz-go consumer: %w", err)
	}

	// Consume + commit.
	cpu0 := sv.CPU()
	t1 := time.Now()
	if err := sv.Client.Resume(ctx, "bench"); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if err := sv.WaitAcked(ctx, uint64(p.jobs), 5*time.Millisecond, traceAcked(p.trace)); err != nil {
		return err
	}
	ackTook := time.Since(t1)
	if err := waitCommitted(ctx, admin, "bench", "bench", int32(p.partitions), int64(p.jobs)); err != nil {
		return err
	}
	took := time.Since(t1)
	cpu := sv.CPU() - cpu0

	fmt.Printf("kafka driver (kfake, %d partitions, %d keys, ordering %s), %d PHP echo workers, %d jobs of %d bytes\n",
		p.partitions, p.keys, p.ordering, p.workers, p.jobs, p.payloadBytes)
	fmt.Printf("push (PushBatch(%d), acks=all): %.0f jobs/s (%s)\n", p.batch, float64(p.jobs)/pushTook.Seconds(), pushTook.Round(time.Millisecond))
	fmt.Printf("consume+commit: %.0f jobs/s (resume to last commit %s; to last ack %s)\n",
		float64(p.jobs)/took.Seconds(), took.Round(time.Millisecond), ackTook.Round(time.Millisecond))
	fmt.Printf("plain franz-go consumer (sync commits every %s): %.0f jobs/s (%s)\n",
		plainCommitGap, float64(p.jobs)/plainTook.Seconds(), plainTook.Round(time.Millisecond))
	fmt.Printf("supervisor/plain: %.2f\n", plainTook.Seconds()/took.Seconds())
	fmt.Printf("supervisor CPU while consuming: %.2f µs/job\n", float64(cpu.Microseconds())/float64(p.jobs))
	return nil
}

// plainCommitGap is how often the plain consumer commits: the driver's
// commitGap, so both commit the same way (synchronous OffsetCommit of
// what is done, at most one per gap).
const plainCommitGap = 5 * time.Millisecond

// consumePlain consumes the n records of topic from the start in group
// "plain" with a franz-go client configured as the driver's consumer
// (auto-commit off, rebalances blocked while polling), committing
// synchronously what it has polled at most every plainCommitGap, and
// returns the time from the client's start until the group's committed
// offsets cover all n records.
func consumePlain(ctx context.Context, brokers []string, topic string, partitions int32, n int64, admin *kgo.Client) (time.Duration, error) {
	start := time.Now()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumerGroup("plain"),
		kgo.ConsumeTopics(topic),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var seen int64
	var last time.Time
	for seen < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		fs.EachError(func(t string, p int32, ferr error) {
			err = errors.Join(err, fmt.Errorf("%s[%d]: %w", t, p, ferr))
		})
		if err != nil {
			return 0, err
		}
		seen += int64(fs.NumRecords())
		if time.Since(last) >= plainCommitGap || seen >= n {
			if err := cl.CommitUncommittedOffsets(ctx); err != nil {
				return 0, err
			}
			last = time.Now()
		}
		cl.AllowRebalance()
	}
	if err := waitCommitted(ctx, admin, "plain", topic, partitions, n); err != nil {
		return 0, err
	}
	return time.Since(start), nil
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
