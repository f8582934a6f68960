package frame

import (
	"errors"
	"reflect"
	"testing"
)

// TestParseReplyGoldenBodies: every from_worker reply vector decodes to
// exactly the Reply it stands for, headers included.
func TestParseReplyGoldenBodies(t *testing.T) {
	counted := map[string][]string{"x-attempt": {"1"}, "attempts": {"1"}}
	want := map[string]Reply{
		"reply_ack":                   {Type: ReplyAck},
		"reply_nack":                  {Type: ReplyNack, Data: ReplyData{Message: "invalid payload: missing user_id"}},
		"reply_nack_requeue":          {Type: ReplyNack, Data: ReplyData{Message: "database is busy", Requeue: true, DelaySeconds: 5}},
		"reply_requeue":               {Type: ReplyRequeue, Data: ReplyData{Message: "rate limited", DelaySeconds: 30, Headers: map[string][]string{"x-retry-reason": {"rate-limit"}}}},
		"reply_legacy_complete":       {Type: ReplyNoError},
		"reply_legacy_fail":           {Type: ReplyError, Data: ReplyData{Message: "mailer down", Requeue: true, DelaySeconds: 10, Headers: map[string][]string{"x-attempt": {"2"}}}},
		"reply_legacy_fail_norequeue": {Type: ReplyError, Data: ReplyData{Message: "bad template"}},
		"reply_rr_fail_requeue":       {Type: ReplyError, Data: ReplyData{Message: "failed", Requeue: true, DelaySeconds: 5, Headers: counted}},
		"reply_rr_fail_requeue_int_header": {Type: ReplyError, Data: ReplyData{Message: "failed", Requeue: true, DelaySeconds: 5,
			Headers: map[string][]string{"x-attempt": {"2"}, "attempts": {"2"}}}},
		"reply_rr_fail_requeue_empty_headers": {Type: ReplyError, Data: ReplyData{Message: "failed", Requeue: true}},
		"reply_rr_fail_norequeue":             {Type: ReplyError, Data: ReplyData{Message: "bad template"}},
		"reply_rr_requeue":                    {Type: ReplyRequeue, Data: ReplyData{Message: "failed", DelaySeconds: 5, Headers: counted}},
		"reply_empty":                         {Type: ReplyAck},
	}
	seen := 0
	for _, v := range goldenVectors() {
		if v.Direction != "from_worker" || v.Flags != 0 || len(v.Context) > 0 {
			continue
		}
		w, ok := want[v.Name]
		if !ok {
			t.Errorf("reply vector %s has no expected Reply in this test", v.Name)
			continue
		}
		seen++
		got, err := ParseReply([]byte(v.Body))
		if err != nil {
			t.Fatalf("%s: %v", v.Name, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: got %+v, want %+v", v.Name, got, w)
		}
	}
	if seen != len(want) {
		t.Errorf("checked %d reply vectors, want %d", seen, len(want))
	}
}

func TestParseReplyPHPEmptyData(t *testing.T) {
	for _, body := range []string{`{"type":2,"data":[]}`, `{"type":2}`, `{"type":2,"data":null}`} {
		r, err := ParseReply([]byte(body))
		if err != nil || r.Type != ReplyAck {
			t.Errorf("ParseReply(%s) = %+v, %v", body, r, err)
		}
	}
	for _, body := range []string{`{"type":9,"data":{}}`, `{"data":{}}`, `[1]`, `{"type":3,"data":[1]}`} {
		if _, err := ParseReply([]byte(body)); !errors.Is(err, ErrBadReply) {
			t.Errorf("ParseReply(%s) = %v, want ErrBadReply", body, err)
		}
	}
}

// TestParseReplyFastPathAgreesWithJSON: every body the byte-compare fast
// path recognises decodes to the same Reply through encoding/json, and a
// body that differs by a single byte takes the JSON path.
func TestParseReplyFastPathAgreesWithJSON(t *testing.T) {
	bodies := []string{"", `{"type":2,"data":{}}`, `{"type":2,"data":[]}`, `{"type":2}`, `{"type":0,"data":{}}`, `{"type":0,"data":[]}`}
	for _, b := range bodies {
		if _, ok := constReply([]byte(b)); !ok {
			t.Errorf("fast path does not recognise %q", b)
		}
		fast, ferr := ParseReply([]byte(b))
		slow, serr := parseReplyJSON([]byte(b))
		if ferr != nil || serr != nil || fast.Type != slow.Type || fast.Data.Message != "" || slow.Data.Message != "" ||
			fast.Data.Requeue != slow.Data.Requeue || len(slow.Data.Headers) != 0 || slow.Data.DelaySeconds != 0 {
			t.Errorf("%q: fast %+v, %v; json %+v, %v", b, fast, ferr, slow, serr)
		}
	}
	for _, b := range []string{`{"type":3,"data":{}}`, `{"type":2,"data":{} }`, `{"type":1,"data":[]}`} {
		if _, ok := constReply([]byte(b)); ok {
			t.Errorf("fast path recognises %q", b)
		}
	}
	if r, err := ParseReply([]byte(`{"type":3,"data":{}}`)); err != nil || r.Type != ReplyNack {
		t.Errorf(`ParseReply({"type":3,"data":{}}) = %+v, %v`, r, err)
	}
}

func BenchmarkParseReply(b *testing.B) {
	for _, bc := range []struct{ name, body string }{
		{"ack-const", `{"type":2,"data":{}}`},
		{"ack-spaced", `{"type": 2, "data": {}}`},
		{"nack", `{"type":3,"data":{"message":"invalid payload","requeue":true,"delay_seconds":5}}`},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseReply(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
