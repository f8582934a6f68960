// Command kfakecmd runs an in-memory Kafka cluster (franz-go's kfake, which
// speaks the real Kafka protocol) for end-to-end tests and benchmarks.
//
//	kfakecmd [-brokers N] [-topic NAME:PARTITIONS]...
//
// It listens on 127.0.0.1 only, creates the given topics, prints the
// brokers' listen addresses on one stdout line, comma-separated, and then
// runs until it gets SIGTERM or SIGINT or its stdin reaches EOF (so a
// parent that dies takes the cluster with it). It exits 0 after a clean
// shutdown and 2 on bad flags or when the cluster cannot start.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

// errUsage marks a bad command line.
var errUsage = errors.New("kfakecmd: usage")

// topicSpec is one -topic flag.
type topicSpec struct {
	name       string
	partitions int32
}

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
}

// run parses args, starts the cluster, writes its addresses to out and
// blocks until a signal or EOF on in.
func run(args []string, in io.Reader, out io.Writer) error {
	fs := flag.NewFlagSet("kfakecmd", flag.ContinueOnError)
	brokers := fs.Int("brokers", 1, "number of brokers")
	var topics []topicSpec
	fs.Func("topic", "topic to create, NAME:PARTITIONS (repeatable)", func(v string) error {
		t, err := parseTopic(v)
		if err == nil {
			topics = append(topics, t)
		}
		return err
	})
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if *brokers < 1 {
		return fmt.Errorf("%w: -brokers must be at least 1", errUsage)
	}
	opts := []kfake.Opt{kfake.NumBrokers(*brokers)}
	for _, t := range topics {
		opts = append(opts, kfake.SeedTopics(t.partitions, t.name))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kfakecmd: starting the cluster: %w", err)
	}
	defer cluster.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	eof := make(chan struct{})
	go func() { // ends with the process: nothing waits for a blocked stdin read
		_, _ = io.Copy(io.Discard, in)
		close(eof)
	}()
	if _, err := fmt.Fprintln(out, strings.Join(cluster.ListenAddrs(), ",")); err != nil {
		return fmt.Errorf("kfakecmd: writing the addresses: %w", err)
	}
	select {
	case <-ctx.Done():
	case <-eof:
	}
	return nil
}

// parseTopic parses NAME:PARTITIONS.
func parseTopic(v string) (topicSpec, error) {
	name, n, ok := strings.Cut(v, ":")
	if !ok || name == "" {
		return topicSpec{}, fmt.Errorf("-topic %q: want NAME:PARTITIONS", v)
	}
	p, err := strconv.ParseInt(n, 10, 32)
	if err != nil || p < 1 {
		return topicSpec{}, fmt.Errorf("-topic %q: partitions must be a positive number", v)
	}
	return topicSpec{name: name, partitions: int32(p)}, nil
}
