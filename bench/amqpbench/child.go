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
	"time"

	"github.com/pipevisor/pipevisor/bench/internal/benchkit"
)

// The plain consumer runs in a process of its own (this program, started
// again with -plain-child) so that its CPU time is measured as the
// supervisor's is, apart from the benchmark's own clients. The parent
// writes "go N" lines on its stdin: consume N messages; the child answers
// "done NS" with the nanoseconds from basic.consume to the last ack. The
// child prints "ready" once its workers run and it is connected, and
// exits at EOF on its stdin.

// plainChildArgs are the command line of the child for cfg.
func plainChildArgs(cfg plainConfig, cpuprofile string) []string {
	return []string{
		"-plain-child",
		"-addr", cfg.addr,
		"-queue", cfg.queue,
		"-prefetch", strconv.Itoa(cfg.prefetch),
		"-workers", strconv.Itoa(cfg.workers),
		"-pipelining", strconv.Itoa(cfg.depth),
		"-command", strings.Join(cfg.command, " "),
		"-plain-cpuprofile", cpuprofile,
	}
}

// runPlainChild is the child's main: it consumes as the parent's stdin
// says, until EOF.
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
	fmt.Println("ready")
	lines := bufio.NewScanner(os.Stdin)
	for lines.Scan() {
		v, ok := strings.CutPrefix(lines.Text(), "go ")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("bad line %q", lines.Text())
		}
		took, err := p.consume(ctx, n)
		if err != nil {
			return err
		}
		fmt.Printf("done %d\n", took.Nanoseconds())
	}
	return lines.Err()
}

// plainProc is the parent's handle on the child.
type plainProc struct {
	*benchkit.Proc
	stdin *os.File
	lines chan string // the child's stdout lines; closed at its EOF
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
	p := &plainProc{Proc: pr, stdin: inW, lines: make(chan string, 1)}
	go func() { // ends at the child's EOF, which stop waits for
		defer close(p.lines)
		s := bufio.NewScanner(out)
		for s.Scan() {
			p.lines <- s.Text()
		}
	}()
	if l, err := p.line(ctx); err != nil || l != "ready" {
		p.stop()
		return nil, errors.Join(errors.New("amqpbench: the plain consumer did not start"), err)
	}
	return p, nil
}

// line returns the child's next line.
func (p *plainProc) line(ctx context.Context) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			return "", errors.New("amqpbench: the plain consumer exited")
		}
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("%w in the plain round", benchkit.ErrTimeout)
	}
}

// consume has the child consume n messages and returns the time it took
// from basic.consume to the last ack, and the child's CPU time meanwhile.
func (p *plainProc) consume(ctx context.Context, n int) (took, cpu time.Duration, err error) {
	cpu0 := p.CPU()
	if _, err := fmt.Fprintf(p.stdin, "go %d\n", n); err != nil {
		return 0, 0, err
	}
	l, err := p.line(ctx)
	if err != nil {
		return 0, 0, err
	}
	cpu = p.CPU() - cpu0
	v, ok := strings.CutPrefix(l, "done ")
	ns, perr := strconv.ParseInt(v, 10, 64)
	if !ok || perr != nil {
		return 0, 0, fmt.Errorf("amqpbench: the plain consumer said %q", l)
	}
	return time.Duration(ns), cpu, nil
}

// stop closes the child's stdin and waits for its exit (SIGTERM after
// childExitWait), and for its stdout reader.
func (p *plainProc) stop() {
	_ = p.stdin.Close()
	t := time.NewTimer(childExitWait)
	defer t.Stop()
	select {
	case <-p.Exited():
	case <-t.C:
		p.Stop()
	}
	for range p.lines {
	}
}

// childExitWait is how long stop waits for the child to exit after EOF
// before it signals it.
const childExitWait = 10 * time.Second
