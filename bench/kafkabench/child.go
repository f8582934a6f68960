package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
)

// The plain consumer runs in a process of its own (this program, started
// again with -plain-child) so that its CPU time is measured as the
// supervisor's is, apart from the benchmark's own clients. The parent
// writes "go N" lines on its stdin: consume until N records in all were
// polled. The child prints "ready" once its workers run and its client was
// created, and exits at EOF on stdin.

// plainChildArgs are the command line of the child for cfg.
func plainChildArgs(cfg plainConfig, cpuprofile string) []string {
	return []string{
		"-plain-child",
		"-brokers", strings.Join(cfg.brokers, ","),
		"-topic", cfg.topic, "-group", cfg.group,
		"-workers", strconv.Itoa(cfg.workers),
		"-pipelining", strconv.Itoa(cfg.depth),
		"-ordering", cfg.ordering,
		"-command", strings.Join(cfg.command, " "),
		"-plain-cpuprofile", cpuprofile,
	}
}

// runPlainChild is the child's main: it runs a plain consumer as the
// parent's stdin says, until EOF.
func runPlainChild(ctx context.Context, cfg plainConfig, cpuprofile string) error {
	if cpuprofile != "" {
		f, err := os.Create(cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	p, err := newPlainConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var target atomic.Int64
	set := make(chan struct{}, 1)
	lines := bufio.NewScanner(os.Stdin)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // ends at EOF on stdin, which the parent closes
		defer cancel()
		for lines.Scan() {
			n, ok := strings.CutPrefix(lines.Text(), "go ")
			if !ok {
				continue
			}
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				continue
			}
			target.Store(v)
			select {
			case set <- struct{}{}:
			default:
			}
		}
	})
	fmt.Println("ready")
	err = p.run(ctx, target.Load, set)
	if err != nil {
		// The parent sees the exit; let the reader end with the process.
		fmt.Fprintln(os.Stderr, "kafkabench plain consumer:", err)
		os.Exit(1)
	}
	return nil
}

// plainProc is the parent's handle on the child.
type plainProc struct {
	*benchkit.Proc
	stdin *os.File
}

// startPlain starts the child and waits for its "ready". The caller must
// call stop.
func startPlain(ctx context.Context, cfg plainConfig, cpuprofile string) (*plainProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, plainChildArgs(cfg, cpuprofile)...)
	cmd.Stderr = os.Stderr
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdin = inR
	out, err := cmd.StdoutPipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	pr, err := benchkit.StartProc(cmd)
	inR.Close()
	if err != nil {
		inW.Close()
		return nil, err
	}
	p := &plainProc{Proc: pr, stdin: inW}
	line := make(chan string, 1)
	go func() { // ends at the first line or EOF; both paths below receive from line
		s := bufio.NewScanner(out)
		s.Scan()
		line <- s.Text()
	}()
	select {
	case l := <-line:
		if l != "ready" {
			p.stop()
			return nil, errors.New("kafkabench: the plain consumer did not start")
		}
		return p, nil
	case <-ctx.Done():
		p.stop()
		<-line
		return nil, ctx.Err()
	}
}

// consumeUpTo tells the child to consume until n records in all.
func (p *plainProc) consumeUpTo(n int64) error {
	_, err := fmt.Fprintf(p.stdin, "go %d\n", n)
	return err
}

// stop closes the child's stdin and waits for its exit (SIGTERM after
// the grace of benchkit.Proc.Stop if it does not go).
func (p *plainProc) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.Exited():
	default:
		waitOrStop(p.Proc)
	}
}

// childExitWait is how long stop waits for the child to exit after EOF
// before it signals it.
const childExitWait = 10 * time.Second

// waitOrStop waits up to childExitWait for p to exit, then stops it.
func waitOrStop(p *benchkit.Proc) {
	t := time.NewTimer(childExitWait)
	defer t.Stop()
	select {
	case <-p.Exited():
	case <-t.C:
		p.Stop()
	}
}
