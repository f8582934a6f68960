package jobsv1

import (
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestRoadRunnerFieldNumbers pins every field RoadRunner's jobs.v1
// (roadrunner-server/api roadrunner/api/jobs/v1/jobs.proto) defines: same
// name, number and kind, so RoadRunner producers' bytes decode unchanged.
func TestRoadRunnerFieldNumbers(t *testing.T) {
	type field struct {
		name   string
		number protoreflect.FieldNumber
		kind   protoreflect.Kind
		list   bool
	}
	msgs := map[protoreflect.MessageDescriptor][]field{
		(&PushRequest{}).ProtoReflect().Descriptor():      {{"job", 1, protoreflect.MessageKind, false}},
		(&PushBatchRequest{}).ProtoReflect().Descriptor(): {{"jobs", 1, protoreflect.MessageKind, true}},
		(&Job{}).ProtoReflect().Descriptor(): {
			{"job", 1, protoreflect.StringKind, false}, {"id", 2, protoreflect.StringKind, false},
			{"payload", 3, protoreflect.BytesKind, false}, {"headers", 4, protoreflect.MessageKind, true},
			{"options", 5, protoreflect.MessageKind, false},
		},
		(&Options{}).ProtoReflect().Descriptor(): {
			{"priority", 1, protoreflect.Int64Kind, false}, {"pipeline", 2, protoreflect.StringKind, false},
			{"delay", 3, protoreflect.Int64Kind, false}, {"auto_ack", 6, protoreflect.BoolKind, false},
			{"topic", 7, protoreflect.StringKind, false}, {"metadata", 8, protoreflect.StringKind, false},
			{"offset", 9, protoreflect.Int64Kind, false}, {"partition", 10, protoreflect.Int32Kind, false},
		},
		(&HeaderValue{}).ProtoReflect().Descriptor():    {{"value", 1, protoreflect.StringKind, true}},
		(&DeclareRequest{}).ProtoReflect().Descriptor(): {{"pipeline", 1, protoreflect.MessageKind, true}},
		(&Stats{}).ProtoReflect().Descriptor():          {{"stats", 1, protoreflect.MessageKind, true}},
		(&Stat{}).ProtoReflect().Descriptor(): {
			{"pipeline", 1, protoreflect.StringKind, false}, {"driver", 2, protoreflect.StringKind, false},
			{"queue", 3, protoreflect.StringKind, false}, {"active", 4, protoreflect.Int64Kind, false},
			{"delayed", 5, protoreflect.Int64Kind, false}, {"reserved", 6, protoreflect.Int64Kind, false},
			{"ready", 7, protoreflect.BoolKind, false}, {"priority", 8, protoreflect.Uint64Kind, false},
		},
		(&Pipelines{}).ProtoReflect().Descriptor(): {{"pipelines", 1, protoreflect.StringKind, true}},
	}
	for md, fields := range msgs {
		if md.FullName().Parent() != "jobs.v1" {
			t.Errorf("%s is not in package jobs.v1", md.FullName())
		}
		for _, want := range fields {
			fd := md.Fields().ByName(protoreflect.Name(want.name))
			if fd == nil {
				t.Errorf("%s.%s missing", md.FullName(), want.name)
				continue
			}
			isList := fd.IsList() || fd.IsMap()
			if fd.Number() != want.number || fd.Kind() != want.kind || isList != want.list {
				t.Errorf("%s.%s = #%d %v list=%v, want #%d %v list=%v", md.FullName(), want.name,
					fd.Number(), fd.Kind(), isList, want.number, want.kind, want.list)
			}
		}
		for i := range md.Fields().Len() {
			if fd := md.Fields().Get(i); fd.Number() > 10 && fd.Number() < 100 {
				t.Errorf("%s.%s uses #%d: Pipevisor fields start at 100", md.FullName(), fd.Name(), fd.Number())
			}
		}
	}
	if r := (&Options{}).ProtoReflect().Descriptor().ReservedRanges(); !r.Has(4) || !r.Has(5) {
		t.Errorf("Options must keep 4 and 5 reserved")
	}
}
