package kafkajobs

import (
	"strconv"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/frame"
)

// Position is where a delivered record sits: its topic, partition and
// offset. It is the Delivery's Context, so the worker's job context
// carries "topic", "partition" and "offset" as RoadRunner's does.
type Position struct {
	Topic     string
	Partition int32
	Offset    int64
}

// AppendContext appends the position's members to a job context.
func (p Position) AppendContext(b []byte) []byte {
	b = append(b, `,"topic":`...)
	b = frame.AppendJSONString(b, p.Topic)
	b = append(b, `,"partition":`...)
	b = strconv.AppendInt(b, int64(p.Partition), 10)
	b = append(b, `,"offset":`...)
	return strconv.AppendInt(b, p.Offset, 10)
}

// PositionOf returns the position of a delivery this driver made (the zero
// Position for any other).
func PositionOf(d *consumer.Delivery) Position {
	p, _ := d.Context.(Position)
	return p
}
