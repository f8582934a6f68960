package boltjobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/consumer/boltjobs"
)

// An ack is final (WhenFinal runs) only once it is on disk: a crash at any
// moment after that leaves the job out of the file. Retry and Dead are on
// disk when Settle returns.
func TestOutcomeFinalOnceOnDisk(t *testing.T) {
	cfg := tempConfig(t)
	q := openQueue(t, boltjobs.NewFiles(nil, nil), "final", cfg)
	const n = 50
	for i := range n {
		publish(t, q, consumer.Job{ID: fmt.Sprint(i)})
	}
	// When job 0's ack is final, the file as a crash leaves it right then.
	atFinal := cfg
	atFinal.File = filepath.Join(t.TempDir(), "at-final.db")
	finals := make(chan error, n)
	for range n {
		d := receive(t, q)
		if d.Final() {
			t.Fatal("a boltdb delivery's outcome is final when Settle returns; want it final on disk")
		}
		o := consumer.Outcome{Action: consumer.Ack}
		switch d.ID {
		case "7":
			o = consumer.Outcome{Action: consumer.Dead, Reason: "poison"}
		case "8":
			o = consumer.Outcome{Action: consumer.Retry, Delay: time.Hour}
		}
		settle(t, d, o)
		first := d.ID == "0"
		d.WhenFinal(func(err error) {
			if err == nil && first {
				err = boltjobs.CrashCopy(q, atFinal.File)
			}
			finals <- err
		})
	}
	deadline := time.After(10 * time.Second)
	var errs []error
	for range n {
		select {
		case err := <-finals:
			errs = append(errs, err)
		case <-deadline:
			t.Fatal("not every outcome became final within 10s")
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	early := openQueue(t, boltjobs.NewFiles(nil, nil), "final", atFinal)
	for {
		st, _ := early.Stat(context.Background())
		if st.Ready == 0 {
			break
		}
		if d := receive(t, early); d.ID == "0" {
			t.Fatal("job 0's ack was final, but a crash at that moment runs it again")
		} else {
			settle(t, d, consumer.Outcome{Action: consumer.Ack})
		}
	}
	crashed := openQueue(t, boltjobs.NewFiles(nil, nil), "final", crashCopy(t, q, cfg))
	st, _ := crashed.Stat(context.Background())
	if st.Ready != 0 || st.Delayed != 1 {
		t.Errorf("after every outcome was final, a crash leaves %+v; want only the delayed retry", st)
	}
}
