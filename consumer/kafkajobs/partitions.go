package kafkajobs

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"
)

// offsetTypes lists the accepted Offset.Type values.
var offsetTypes = []string{OffsetAtStart, OffsetAtEnd, OffsetAt, OffsetAfterMilli, OffsetRelative, OffsetWithEpoch}

// PartitionOffsets maps a partition number to where its consumption
// starts (one topic of consumer_options.consume_partitions).
//
// It decodes from a mapping ({0: {type: AtStart}, 3: {type: At, value:
// 42}}) as RoadRunner documents it, and also from a list, where the index
// is the partition: that is how the PHP SDK's json_encode writes
// partitions 0..n-1 ([{"type":"AtStart"}]); null list items are skipped.
type PartitionOffsets map[int32]Offset

// UnmarshalYAML implements yaml.Unmarshaler (see PartitionOffsets).
func (po *PartitionOffsets) UnmarshalYAML(n *yaml.Node) error {
	out := PartitionOffsets{}
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			p, err := strconv.ParseInt(k, 10, 32)
			if err != nil || p < 0 {
				return fmt.Errorf("partition %q: must be a partition number (0 or more)", k)
			}
			if _, dup := out[int32(p)]; dup {
				return fmt.Errorf("partition %d: listed twice", p)
			}
			o, err := decodeOffset(n.Content[i+1])
			if err != nil {
				return fmt.Errorf("partition %d: %w", p, err)
			}
			out[int32(p)] = o
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if item.Kind == yaml.ScalarNode && item.ShortTag() == "!!null" {
				continue
			}
			o, err := decodeOffset(item)
			if err != nil {
				return fmt.Errorf("partition %d: %w", i, err)
			}
			out[int32(i)] = o
		}
	default:
		return errors.New("expected a mapping of partition numbers to offsets ({0: {type: AtStart}})")
	}
	*po = out
	return nil
}

// decodeOffset decodes {type, value} strictly: other keys are errors, a
// missing type is AtStart.
func decodeOffset(n *yaml.Node) (Offset, error) {
	o := Offset{Type: OffsetAtStart}
	if n.Kind != yaml.MappingNode {
		return o, errors.New("expected a mapping {type, value}")
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch k {
		case "type":
			if v.ShortTag() != "!!null" {
				o.Type = v.Value
			}
		case "value":
			if v.ShortTag() == "!!null" {
				continue
			}
			x, err := strconv.ParseInt(v.Value, 10, 64)
			if err != nil {
				return o, fmt.Errorf("value: must be an integer, got %q", v.Value)
			}
			o.Value = x
		default:
			return o, fmt.Errorf("%s: unknown key (known keys: type, value)", k)
		}
	}
	if !slices.Contains(offsetTypes, o.Type) {
		return o, fmt.Errorf("type: must be one of %v; got %q", offsetTypes, o.Type)
	}
	return o, nil
}

// kgoPartitions is consume_partitions as kgo.ConsumePartitions takes it.
func kgoPartitions(cp map[string]PartitionOffsets) map[string]map[int32]kgo.Offset {
	out := make(map[string]map[int32]kgo.Offset, len(cp))
	for topic, parts := range cp {
		if len(parts) == 0 {
			continue
		}
		m := make(map[int32]kgo.Offset, len(parts))
		for p, o := range parts {
			m[p] = startOffset(o)
		}
		out[topic] = m
	}
	return out
}

// partitionTopics returns the topics of consume_partitions, sorted.
func partitionTopics(cp map[string]PartitionOffsets) []string {
	out := make([]string, 0, len(cp))
	for t, parts := range cp {
		if len(parts) > 0 {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}
