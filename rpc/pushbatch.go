package rpc

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/runtime/protoiface"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
)

// PushBatchArgs is the argument of jobs.PushBatch: a jobs.v1
// PushBatchRequest on the wire, in either codec.
//
// Decoding a batch of a thousand jobs with the generic protobuf decoder
// and converting each *jobsv1.Job cost more CPU per job than the rest of
// the push path together. So the protobuf codec decodes the common shape
// (jobs with job, id, payload and options, each field once) straight into
// consumer.Jobs; any other message (headers, repeated or unknown fields,
// invalid UTF-8) goes through the generic decoder, so every message
// decodes as it always did. The JSON codec fills the embedded request.
//
// It is exported only because net/rpc requires exported argument types.
type PushBatchArgs struct {
	jobsv1.PushBatchRequest

	fast    bool // jobs and err were decoded by the fast path
	jobs    []consumer.Job
	err     error
	scratch [1]protoiface.Methods
}

// ProtoReflect is the request's reflection, with the fast decoder as its
// unmarshal method.
func (a *PushBatchArgs) ProtoReflect() protoreflect.Message {
	return fastBatch{Message: a.PushBatchRequest.ProtoReflect(), a: a}
}

// fastBatch is the embedded request's protoreflect.Message with a
// different Unmarshal method.
type fastBatch struct {
	protoreflect.Message
	a *PushBatchArgs
}

// ProtoMethods returns the methods proto.Unmarshal calls.
func (m fastBatch) ProtoMethods() *protoiface.Methods {
	ms := &m.a.scratch[0]
	ms.Unmarshal = m.a.unmarshal
	return ms
}

// errNotSimple: the message needs the generic decoder.
var errNotSimple = errors.New("rpc: not a plain push batch")

func (a *PushBatchArgs) unmarshal(in protoiface.UnmarshalInput) (protoiface.UnmarshalOutput, error) {
	out := protoiface.UnmarshalOutput{Flags: protoiface.UnmarshalInitialized}
	jobs, err := decodeBatch(in.Buf)
	if errors.Is(err, errNotSimple) {
		a.fast = false
		return out, proto.UnmarshalOptions{}.Unmarshal(in.Buf, &a.PushBatchRequest)
	}
	// Validation errors (no pipeline, bad delay) are the call's result,
	// not a decoding failure: PushBatch reports them as before.
	a.fast, a.jobs, a.err = true, jobs, err
	return out, nil
}

// consumerJobs returns the batch as consumer.Jobs, or the error of the
// first invalid job ("job N: ...").
func (a *PushBatchArgs) consumerJobs() ([]consumer.Job, error) {
	if a.fast {
		return a.jobs, a.err
	}
	req := a.GetJobs()
	out := make([]consumer.Job, 0, len(req))
	for i, pj := range req {
		if pj == nil {
			return nil, fmt.Errorf("job %d: %w", i, ErrNoJob)
		}
		j, err := JobFromProto(pj)
		if err != nil {
			return nil, fmt.Errorf("job %d: %w", i, err)
		}
		out = append(out, j)
	}
	return out, nil
}

// decodeBatch decodes a PushBatchRequest whose jobs have only the fields
// job, id, payload and options, each at most once, and whose options have
// only known fields, each at most once. Anything else returns
// errNotSimple. The job name and pipeline strings are shared by
// consecutive jobs that repeat them.
func decodeBatch(b []byte) ([]consumer.Job, error) {
	n := 0
	for rest := b; len(rest) > 0; n++ {
		num, typ, l := protowire.ConsumeField(rest)
		if l < 0 || num != 1 || typ != protowire.BytesType {
			return nil, errNotSimple
		}
		rest = rest[l:]
	}
	out := make([]consumer.Job, 0, n)
	var prev fields
	var firstErr error
	for i := 0; len(b) > 0; i++ {
		_, _, tl := protowire.ConsumeTag(b)
		msg, ml := protowire.ConsumeBytes(b[tl:])
		b = b[tl+ml:]
		f, err := decodeJob(msg, &prev)
		if err != nil {
			return nil, err
		}
		j, err := jobFromFields(f)
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("job %d: %w", i, err)
		}
		out = append(out, j)
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

// fields are a job's values as they travel in a jobs.v1 Job.
type fields struct {
	id, name, pipeline, key string
	payload                 []byte
	headers                 map[string][]string
	priority, delay         int64
	autoAck                 bool
}

// decodeJob decodes one Job message; prev is the job before it, whose
// name and pipeline strings are reused when they repeat.
func decodeJob(b []byte, prev *fields) (fields, error) {
	var f fields
	var seen uint32
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 || num > 31 || seen&(1<<num) != 0 {
			return f, errNotSimple
		}
		seen |= 1 << num
		b = b[l:]
		if typ != protowire.BytesType {
			return f, errNotSimple
		}
		v, vl := protowire.ConsumeBytes(b)
		if vl < 0 {
			return f, errNotSimple
		}
		b = b[vl:]
		switch num {
		case 1:
			if !utf8.Valid(v) {
				return f, errNotSimple
			}
			f.name = reuse(v, prev.name)
		case 2:
			if !utf8.Valid(v) {
				return f, errNotSimple
			}
			f.id = string(v)
		case 3:
			f.payload = append([]byte{}, v...)
		case 5:
			if err := decodeOptions(v, &f, prev); err != nil {
				return f, err
			}
		default: // 4 (headers) and unknown fields
			return f, errNotSimple
		}
	}
	*prev = f
	return f, nil
}

func decodeOptions(b []byte, f *fields, prev *fields) error {
	var seen uint32
	for len(b) > 0 {
		num, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return errNotSimple
		}
		bit := uint32(1) << min(num, 31)
		if num == 100 {
			bit = 1 << 0 // field 0 does not exist: its bit is free
		}
		if seen&bit != 0 {
			return errNotSimple
		}
		seen |= bit
		b = b[l:]
		switch {
		case typ == protowire.VarintType && (num == 1 || num == 3 || num == 6 || num == 9 || num == 10):
			v, vl := protowire.ConsumeVarint(b)
			if vl < 0 {
				return errNotSimple
			}
			b = b[vl:]
			switch num {
			case 1:
				f.priority = int64(v)
			case 3:
				f.delay = int64(v)
			case 6:
				f.autoAck = v != 0
			} // 9 offset, 10 partition: Kafka-only, ignored
		case typ == protowire.BytesType && (num == 2 || num == 7 || num == 8 || num == 100):
			v, vl := protowire.ConsumeBytes(b)
			if vl < 0 || !utf8.Valid(v) {
				return errNotSimple
			}
			b = b[vl:]
			switch num {
			case 2:
				f.pipeline = reuse(v, prev.pipeline)
			case 100:
				f.key = string(v)
			} // 7 topic, 8 metadata: Kafka-only, ignored
		default:
			return errNotSimple
		}
	}
	return nil
}

// reuse returns s when it equals b, else a new string of b.
func reuse(b []byte, s string) string {
	if string(b) == s {
		return s
	}
	return string(b)
}
