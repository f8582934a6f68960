package main

import (
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/jobs"
)

// plainDriver hands out one delivery per Receive only.
type plainDriver struct{ jobs.Driver }

// readyDriver also hands out ready deliveries without waiting.
type readyDriver struct{ jobs.Driver }

func (readyDriver) ReceiveReady(dst []*consumer.Delivery, _ int) []*consumer.Delivery { return dst }

func TestIsReadyReceiver(t *testing.T) {
	if isReadyReceiver(plainDriver{}) {
		t.Error("plainDriver is not a ReadyReceiver")
	}
	if !isReadyReceiver(readyDriver{}) {
		t.Error("readyDriver is a ReadyReceiver")
	}
}

// TestAMQPIsReadyReceiver: the AMQP driver hands out ready deliveries, so
// its prefetch cap is the slots times jobs.pool.pipelining.
func TestAMQPIsReadyReceiver(t *testing.T) {
	if !amqpReady {
		t.Error("*amqpjobs.Driver is not a consumer.ReadyReceiver")
	}
}

// TestMaxHeld checks the cap on the AMQP prefetch: the slots, times
// jobs.pool.pipelining only when the pipeline can fill batches from the
// driver.
func TestMaxHeld(t *testing.T) {
	for _, tc := range []struct {
		conc, pipelining int
		ready            bool
		want             int
	}{
		{conc: 4, pipelining: 1, ready: false, want: 4},
		{conc: 4, pipelining: 8, ready: false, want: 4},
		{conc: 4, pipelining: 1, ready: true, want: 4},
		{conc: 4, pipelining: 0, ready: true, want: 4},
		{conc: 4, pipelining: 8, ready: true, want: 32},
		{conc: 1, pipelining: 64, ready: true, want: 64},
	} {
		if got := maxHeld(tc.conc, tc.pipelining, tc.ready); got != tc.want {
			t.Errorf("maxHeld(%d, %d, %v) = %d, want %d", tc.conc, tc.pipelining, tc.ready, got, tc.want)
		}
	}
}
