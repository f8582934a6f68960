package frame

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite frame/testdata golden vectors from the Go encoder")

// vector describes one golden frame file; vectors.json is the list of
// these, read by the PHP and Python client tests.
type vector struct {
	Name        string   `json:"name"`
	File        string   `json:"file"`
	Direction   string   `json:"direction"` // "to_worker" or "from_worker"
	Flags       byte     `json:"flags"`
	Options     []uint32 `json:"options"`
	Context     string   `json:"context"`
	Body        string   `json:"body"`
	Description string   `json:"description"`
}

const jobContextJSON = `{"id":"9f0c2a7e-5b1d-4c8e-a3f2-7d6e1b0c4a91","job":"App\\Jobs\\SendWelcomeEmail","driver":"amqp","queue":"emails","headers":{"traceparent":["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"],"x-attempt":["1"]},"pipeline":"emails"}`

func goldenVectors() []vector {
	ctl := func(name, dir string, flags byte, payload, desc string) vector {
		return vector{Name: name, Direction: dir, Flags: flags, Options: []uint32{}, Body: payload, Description: desc}
	}
	reply := func(name, body, desc string) vector {
		return vector{Name: name, Direction: "from_worker", Flags: 0, Options: []uint32{0}, Body: body, Description: desc}
	}
	vs := []vector{
		ctl("handshake_request", "to_worker", FlagControl|FlagCodecJSON, `{"pid":4242}`,
			"supervisor asks the worker for its pid right after spawning it (control frame, flags CONTROL|CODEC_JSON, no options)"),
		ctl("handshake_reply", "from_worker", FlagControl, `{"pid":31337}`,
			"worker answers the handshake with its own pid (control frame, flags CONTROL, no options)"),
		ctl("stop", "to_worker", FlagControl|FlagCodecJSON, `{"stop":true}`,
			"supervisor tells the worker to exit its loop (control frame, flags CONTROL|CODEC_JSON, no options)"),
		{Name: "job", Direction: "to_worker", Flags: FlagCodecRaw, Options: []uint32{uint32(len(jobContextJSON))},
			Context: jobContextJSON, Body: `{"user_id":42,"template":"welcome","locale":"en"}`,
			Description: "a job: flags CODEC_RAW, option 0 = context length, payload = context JSON followed by the raw job body"},
		reply("reply_ack", `{"type":2,"data":{}}`, "worker acks the job (type 2); empty context, option 0 = 0, flags 0"),
		reply("reply_nack", `{"type":3,"data":{"message":"invalid payload: missing user_id","requeue":false}}`,
			"worker nacks without redelivery (type 3, requeue false): the job is dead-lettered"),
		reply("reply_nack_requeue", `{"type":3,"data":{"message":"database is busy","requeue":true,"delay_seconds":5}}`,
			"worker nacks with redelivery after 5 s (type 3, requeue true, delay_seconds 5)"),
		reply("reply_requeue", `{"type":4,"data":{"message":"rate limited","delay_seconds":30,"headers":{"x-retry-reason":["rate-limit"]}}}`,
			"worker requeues after 30 s with a header added (type 4, delay_seconds, headers)"),
		reply("reply_legacy_complete", `{"type":0,"data":{}}`, "deprecated complete() reply (type 0): treated as ack"),
		reply("reply_legacy_fail", `{"type":1,"data":{"message":"mailer down","requeue":true,"delay_seconds":10,"headers":{"x-attempt":["2"]}}}`,
			"deprecated fail() reply with requeue (type 1, requeue true): treated as nack with redelivery"),
		reply("reply_legacy_fail_norequeue", `{"type":1,"data":{"message":"bad template","requeue":false}}`,
			"deprecated fail() reply without requeue (type 1, requeue false): treated as nack, never a silent ack"),
		reply("reply_rr_fail_requeue", `{"type":1,"data":{"message":"failed","requeue":true,"delay_seconds":5,"headers":{"x-attempt":["1"],"attempts":["1"]}}}`,
			"RoadRunner PHP SDK 2.9/4.x fail($e, requeue: true) after withHeader(\"attempts\", 1)->withDelay(5): type 1 with every header the task has (those it received included) and the delay; runs as a REQUEUE with these headers"),
		reply("reply_rr_fail_requeue_int_header", `{"type":1,"data":{"message":"failed","requeue":true,"delay_seconds":5,"headers":{"x-attempt":["2"],"attempts":[2]}}}`,
			"RoadRunner PHP SDK 2.0-2.8/3.0 fail($e, requeue: true) after withHeader(\"attempts\", 2): the header value stays a JSON number; read as the string \"2\""),
		reply("reply_rr_fail_requeue_empty_headers", `{"type":1,"data":{"message":"failed","requeue":true,"delay_seconds":0,"headers":[]}}`,
			"RoadRunner PHP SDK 2.0 fail($e, requeue: true) on a task without headers: the empty header array is written as a list; no headers"),
		reply("reply_rr_fail_norequeue", `{"type":1,"data":{"message":"bad template","requeue":false,"delay_seconds":0}}`,
			"RoadRunner PHP SDK 4.x fail($e) (requeue false) on a task without headers: dead, never a silent ack"),
		reply("reply_rr_requeue", `{"type":4,"data":{"message":"failed","delay_seconds":5,"headers":{"x-attempt":["1"],"attempts":["1"]}}}`,
			"RoadRunner PHP SDK 4.5+ requeue($e) after withHeader(\"attempts\", 1)->withDelay(5): type 4 with every header the task has"),
		reply("reply_empty", ``, "a reply with empty context and empty body: treated as ack"),
		{Name: "reply_worker_stop", Direction: "from_worker", Flags: 0, Options: []uint32{13}, Context: `{"stop":true}`,
			Description: "worker asks to be retired (context {\"stop\":true}, empty body): the supervisor runs the job on another worker"},
		{Name: "error", Direction: "from_worker", Flags: FlagError, Options: []uint32{},
			Body:        "RuntimeException: SMTP connection refused in /app/src/Jobs/SendWelcomeEmail.php:31",
			Description: "worker reports a job error (flags ERROR, no options, payload = message text); the worker stays alive"},
	}
	for i := range vs {
		vs[i].File = vs[i].Name + ".bin"
	}
	return vs
}

// encodeVector builds a vector's bytes with the package encoder.
func encodeVector(v vector) []byte {
	return AppendFrame(nil, v.Flags, v.Options, []byte(v.Context), []byte(v.Body))
}

func TestGoldenVectors(t *testing.T) {
	vs := goldenVectors()
	dir := "testdata"
	if *update {
		for _, v := range vs {
			if err := os.WriteFile(filepath.Join(dir, v.File), encodeVector(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		js, err := json.MarshalIndent(vs, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "vectors.json"), append(js, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	raw, err := os.ReadFile(filepath.Join(dir, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var listed []vector
	if err := json.Unmarshal(raw, &listed); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(vs)
	jl, _ := json.Marshal(listed)
	if !bytes.Equal(js, jl) {
		t.Fatalf("vectors.json does not match the vectors in this test; run go test ./frame -run TestGoldenVectors -update")
	}
	for _, v := range listed {
		got, err := os.ReadFile(filepath.Join(dir, v.File))
		if err != nil {
			t.Fatal(err)
		}
		if want := encodeVector(v); !bytes.Equal(got, want) {
			t.Errorf("%s: file bytes\n%x\nencoder bytes\n%x", v.File, got, want)
		}
		// The file decodes back to what vectors.json says.
		f, err := NewReader(bytes.NewReader(got)).ReadFrame()
		if err != nil {
			t.Fatalf("%s: %v", v.File, err)
		}
		if f.Flags != v.Flags || len(f.Options) != len(v.Options) {
			t.Fatalf("%s: decoded flags %#x options %v, want %#x %v", v.File, f.Flags, f.Options, v.Flags, v.Options)
		}
		if string(f.Payload) != v.Context+v.Body {
			t.Fatalf("%s: payload %q", v.File, f.Payload)
		}
	}
}
