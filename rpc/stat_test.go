package rpc

import (
	"testing"

	"github.com/pipevisor/pipevisor/consumer"
)

// TestStatToProtoRoadRunnerFields: active, delayed and reserved carry what
// RoadRunner's driver of the same name reports; Pipevisor's exact numbers
// stay in queued, running and waiting_delay, and come back unchanged.
func TestStatToProtoRoadRunnerFields(t *testing.T) {
	for _, tc := range []struct {
		st                        consumer.Stat
		active, delayed, reserved int64
	}{
		// memory: the backlog is queued + running.
		{consumer.Stat{Driver: "memory", Ready: 4, Active: 2, Delayed: 3}, 6, 3, 0},
		// amqp: the queue's ready messages; delayed in the delay queues.
		{consumer.Stat{Driver: "amqp", Ready: 3, Active: 2, Delayed: 5}, 3, 5, 0},
		{consumer.Stat{Driver: "amqp", Ready: -1, Active: 1, Delayed: -1}, 0, 0, 0},
		// sqs: ApproximateNumberOfMessages, ...Delayed, ...NotVisible.
		{consumer.Stat{Driver: "sqs", Ready: 7, Active: 1, Delayed: 2, Reserved: 4}, 7, 2, 4},
		// kafka: RoadRunner reports none of them.
		{consumer.Stat{Driver: "kafka", Ready: 9, Active: 2, Delayed: 1}, 0, 0, 0},
	} {
		tc.st.Pipeline, tc.st.Consuming, tc.st.Acked = "p", true, 11
		ps := StatToProto(tc.st)
		if ps.Active != tc.active || ps.Delayed != tc.delayed || ps.Reserved != tc.reserved || !ps.Ready {
			t.Errorf("%s %+v: active %d delayed %d reserved %d ready %v, want %d %d %d true",
				tc.st.Driver, tc.st, ps.Active, ps.Delayed, ps.Reserved, ps.Ready, tc.active, tc.delayed, tc.reserved)
		}
		if ps.Queued != tc.st.Ready || ps.Running != tc.st.Active || ps.WaitingDelay != tc.st.Delayed {
			t.Errorf("%s: queued %d running %d waiting_delay %d, want %d %d %d",
				tc.st.Driver, ps.Queued, ps.Running, ps.WaitingDelay, tc.st.Ready, tc.st.Active, tc.st.Delayed)
		}
		back := StatFromProto(ps)
		if tc.st.Driver != "sqs" {
			back.Reserved = tc.st.Reserved // only sqs carries it on the wire
		}
		if back != tc.st {
			t.Errorf("%s: round trip %+v, want %+v", tc.st.Driver, back, tc.st)
		}
	}
}
