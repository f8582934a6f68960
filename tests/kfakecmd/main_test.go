package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func TestRunServesTopicsUntilStdinEOF(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- run([]string{"-topic", "a:3", "-topic", "b:1"}, inR, outW) }()

	line, err := bufio.NewReader(outR).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addrs := strings.Split(strings.TrimSpace(line), ",")
	if len(addrs) != 1 || !strings.HasPrefix(addrs[0], "127.0.0.1:") {
		t.Fatalf("addresses %q, want one on 127.0.0.1", line)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrMetadataRequest()
	for _, name := range []string{"a", "b"} {
		rt := kmsg.NewMetadataRequestTopic()
		rt.Topic = kmsg.StringPtr(name)
		req.Topics = append(req.Topics, rt)
	}
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]int{}
	for _, tp := range resp.Topics {
		if tp.ErrorCode != 0 {
			t.Fatalf("topic %v: error code %d", tp.Topic, tp.ErrorCode)
		}
		parts[*tp.Topic] = len(tp.Partitions)
	}
	if parts["a"] != 3 || parts["b"] != 1 {
		t.Fatalf("partitions %v, want a:3 b:1", parts)
	}

	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run after EOF: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after EOF on stdin")
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-topic", "nopartitions"},
		{"-topic", "t:0"},
		{"-topic", ":3"},
		{"-brokers", "0"},
		{"extra"},
	} {
		err := run(args, strings.NewReader(""), io.Discard)
		if !errors.Is(err, errUsage) {
			t.Errorf("run(%q) = %v, want errUsage", args, err)
		}
	}
}
