package sqsjobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/pipevisor/pipevisor/consumer"
)

// Stat reports the queue's ApproximateNumberOfMessages (Ready),
// ...NotVisible (Reserved) and ...Delayed (Delayed), and Active: the
// deliveries handed out and not settled. Queue is the queue URL, as
// RoadRunner reports it.
func (d *Driver) Stat(ctx context.Context) (consumer.Stat, error) {
	st := consumer.Stat{
		Pipeline: d.name,
		Driver:   DriverName,
		Queue:    d.queueURL,
		Priority: d.cfg.Priority,
		Ready:    -1,
		Delayed:  -1,
	}
	health := d.st.health()
	if errors.Is(health, consumer.ErrClosed) {
		return st, health
	}
	st.Active = d.st.active()
	st.Consuming = health == nil
	if health != nil {
		st.Error = health.Error()
	}
	out, err := d.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(d.queueURL),
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameApproximateNumberOfMessages,
			types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
			types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
		},
	})
	if err != nil {
		st.Error = err.Error()
		return st, fmt.Errorf("sqsjobs: stat %s: %w", d.queueName, err)
	}
	num := func(a types.QueueAttributeName) int64 {
		n, err := strconv.ParseInt(out.Attributes[string(a)], 10, 64)
		if err != nil {
			return -1
		}
		return n
	}
	st.Ready = num(types.QueueAttributeNameApproximateNumberOfMessages)
	st.Reserved = num(types.QueueAttributeNameApproximateNumberOfMessagesNotVisible)
	st.Delayed = num(types.QueueAttributeNameApproximateNumberOfMessagesDelayed)
	return st, nil
}
