package rpc

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/rpc/jobsv1"
)

// referenceJobs decodes data the generic way: proto.Unmarshal into the
// generated request, then JobFromProto per job.
func referenceJobs(data []byte) ([]consumer.Job, error) {
	var req jobsv1.PushBatchRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return nil, err
	}
	a := PushBatchArgs{}
	a.Jobs = req.Jobs
	return a.consumerJobs()
}

var uuidRE = regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)

// sameJobs compares two decodings; generated UUIDs only need to be UUIDs.
func sameJobs(t *testing.T, name string, got, want []consumer.Job, gotErr, wantErr error) {
	t.Helper()
	if (gotErr == nil) != (wantErr == nil) ||
		(gotErr != nil && uuidRE.ReplaceAllString(gotErr.Error(), "U") != uuidRE.ReplaceAllString(wantErr.Error(), "U")) {
		t.Fatalf("%s: error %v, want %v", name, gotErr, wantErr)
	}
	for _, sentinel := range []error{ErrNoPipeline, ErrNegativeDelay, ErrDelayTooLong} {
		if errors.Is(gotErr, sentinel) != errors.Is(wantErr, sentinel) {
			t.Fatalf("%s: error %v does not wrap what %v wraps", name, gotErr, wantErr)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d jobs, want %d", name, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if w.ID != "" && uuidRE.MatchString(w.ID) && uuidRE.MatchString(g.ID) {
			g.ID = w.ID
		}
		if len(g.Payload) == 0 && len(w.Payload) == 0 {
			g.Payload = w.Payload
		}
		if !reflect.DeepEqual(g, w) {
			t.Fatalf("%s: job %d = %+v, want %+v", name, i, g, w)
		}
	}
}

func TestPushBatchArgsDecodeLikeGeneric(t *testing.T) {
	opts := func(p string) *jobsv1.Options { return &jobsv1.Options{Pipeline: p} }
	msgs := map[string]*jobsv1.PushBatchRequest{
		"plain": {Jobs: []*jobsv1.Job{
			{Job: "App\\Echo", Id: "1", Payload: []byte("x"), Options: opts("p")},
			{Job: "App\\Echo", Id: "2", Payload: []byte("yy"), Options: opts("p")},
			{Job: "Other", Id: "3", Options: opts("q")},
		}},
		"all options": {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Payload: []byte("p"), Options: &jobsv1.Options{
			Priority: 7, Pipeline: "p", Delay: 30, AutoAck: true, Topic: "t", Metadata: "m", Offset: 9, Partition: 2, Key: "k"}}}},
		"negative priority": {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Options: &jobsv1.Options{Priority: -3, Pipeline: "p"}}}},
		"empty id":          {Jobs: []*jobsv1.Job{{Job: "J", Options: opts("p")}}},
		"no options":        {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Options: opts("p")}, {Job: "J", Id: "2"}}},
		"negative delay":    {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Options: &jobsv1.Options{Pipeline: "p", Delay: -1}}}},
		"huge delay":        {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Options: &jobsv1.Options{Pipeline: "p", Delay: 1 << 40}}}},
		"headers":           {Jobs: []*jobsv1.Job{{Job: "J", Id: "1", Options: opts("p"), Headers: map[string]*jobsv1.HeaderValue{"a": {Value: []string{"1", "2"}}}}}},
		"empty":             {},
	}
	for name, m := range msgs {
		data, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var a PushBatchArgs
		if err := proto.Unmarshal(data, &a); err != nil {
			t.Fatalf("%s: Unmarshal: %v", name, err)
		}
		got, gotErr := a.consumerJobs()
		want, wantErr := referenceJobs(data)
		sameJobs(t, name, got, want, gotErr, wantErr)
		if fast := name != "headers"; a.fast != fast {
			t.Errorf("%s: fast path used = %v, want %v", name, a.fast, fast)
		}
	}

	// Hand-made wire bytes the fast path leaves to the generic decoder.
	job := func(fields ...[]byte) []byte {
		var b []byte
		for _, f := range fields {
			b = append(b, f...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), b)
	}
	str := func(num protowire.Number, s string) []byte {
		return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
	}
	optsField := func(b ...[]byte) []byte {
		var o []byte
		for _, x := range b {
			o = append(o, x...)
		}
		return protowire.AppendBytes(protowire.AppendTag(nil, 5, protowire.BytesType), o)
	}
	varint := func(num protowire.Number, v uint64) []byte {
		return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
	}
	raw := map[string][]byte{
		"id twice":            job(str(2, "a"), str(2, "b"), optsField(str(2, "p"))),
		"options twice":       job(str(2, "a"), optsField(str(2, "p")), optsField(varint(1, 5))),
		"pipeline twice":      job(str(2, "a"), optsField(str(2, "p"), str(2, "q"))),
		"unknown job field":   job(str(2, "a"), varint(9, 1), optsField(str(2, "p"))),
		"unknown option":      job(str(2, "a"), optsField(str(2, "p"), varint(4, 1))),
		"unknown batch field": append(job(str(2, "a"), optsField(str(2, "p"))), varint(2, 1)...),
		"invalid utf8 id":     job(str(2, "\xff"), optsField(str(2, "p"))),
		"truncated":           job(str(2, "a"), optsField(str(2, "p")))[:6],
	}
	for name, data := range raw {
		var a PushBatchArgs
		uerr := proto.Unmarshal(data, &a)
		var req jobsv1.PushBatchRequest
		rerr := proto.Unmarshal(data, &req)
		if (uerr == nil) != (rerr == nil) {
			t.Fatalf("%s: Unmarshal = %v, generic %v", name, uerr, rerr)
		}
		if a.fast {
			t.Errorf("%s: took the fast path", name)
		}
		if uerr != nil {
			continue
		}
		got, gotErr := a.consumerJobs()
		want, wantErr := referenceJobs(data)
		sameJobs(t, name, got, want, gotErr, wantErr)
	}
}

func BenchmarkPushBatchDecode(b *testing.B) {
	req := &jobsv1.PushBatchRequest{}
	for i := range 1000 {
		req.Jobs = append(req.Jobs, &jobsv1.Job{Job: "App\\Jobs\\Echo", Id: strconv.Itoa(i),
			Payload: []byte("0123456789abcdef0123456789abcdef"), Options: &jobsv1.Options{Pipeline: "bench"}})
	}
	data, err := proto.Marshal(req)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("fast", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var a PushBatchArgs
			if err := proto.Unmarshal(data, &a); err != nil {
				b.Fatal(err)
			}
			if js, err := a.consumerJobs(); err != nil || len(js) != 1000 {
				b.Fatal(len(js), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/job")
	})
	b.Run("generic", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if js, err := referenceJobs(data); err != nil || len(js) != 1000 {
				b.Fatal(len(js), err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/job")
	})
}
