package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
)

// sentinel marks every secret of secretYAML; it must appear in no answer.
const sentinel = "S3NTINEL"

const secretYAML = `version: "3"
server:
  command: php worker.php
  env:
    DB_PASSWORD: S3NTINEL-env
    API_TOKEN: S3NTINEL-tok
    DATABASE_URL: postgres://app:S3NTINEL-url@db.internal/app
    APP_ENV: production
amqp:
  addr: amqp://guest:S3NTINEL-amqp@127.0.0.1:5672/
kafka:
  brokers: [127.0.0.1:9092]
  sasl:
    mechanism: aws_msk_iam
    username: kafkauser
    password: S3NTINEL-sasl
    access_key: S3NTINEL-ak
    secret_key: S3NTINEL-sk
    session_token: S3NTINEL-st
sqs:
  key: S3NTINEL-sqskey
  secret: S3NTINEL-sqssecret
  session_token: S3NTINEL-sqstok
  region: eu-west-1
dashboard:
  address: 127.0.0.1:8090
  auth:
    basic: {user: ops, password: S3NTINEL-dash}
jobs:
  pipelines:
    orders:
      driver: memory
`

// leakyStats reports errors and dead jobs that quote the secrets.
type leakyStats struct{ fakeStats }

func (l *leakyStats) Stat(ctx context.Context) ([]consumer.Stat, error) {
	return []consumer.Stat{{Pipeline: "orders", Driver: "memory", Error: "dial amqp://guest:S3NTINEL-amqp@127.0.0.1:5672/: refused; sasl S3NTINEL-sasl"}}, nil
}

// leakyFailed holds a dead job whose payload and reason quote the
// secrets, and fails retries with an error that quotes one.
type leakyFailed struct{ fakeFailed }

func newLeakyFailed() *leakyFailed {
	return &leakyFailed{fakeFailed{dead: []consumer.DeadJob{{
		Job:    consumer.Job{ID: "j1", Pipeline: "orders", Headers: map[string][]string{"auth": {"S3NTINEL-amqp"}}, Payload: []byte(`{"dsn":"redis://u:S3NTINEL-payload@cache/0","k":"S3NTINEL-sqssecret"}`)},
		Reason: "auth failed for S3NTINEL-dash"}}}}
}

func (l *leakyFailed) FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error) {
	return nil, errors.New("publish: dial amqp://guest:S3NTINEL-amqp@127.0.0.1:5672/: refused")
}

// The config page masks every secret and keeps the rest; no answer of
// any endpoint carries a secret of the configuration, even when an
// error or a job quotes one.
func TestNoSecretInAnyAnswer(t *testing.T) {
	root, err := config.Parse([]byte(secretYAML))
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Root: root, Stats: &leakyStats{fakeStats{paused: map[string]bool{}}}, Failed: newLeakyFailed(), History: NewHistory(nil), Workers: fakeWorkers{}})
	if err != nil {
		t.Fatal(err)
	}
	h := d.Handler()
	get := func(path string) (int, string) {
		req := httptest.NewRequest("GET", "http://127.0.0.1:8090"+path, nil)
		req.SetBasicAuth("ops", "S3NTINEL-dash")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	for _, p := range []string{"/", "/assets/app.js", "/api/session", "/api/overview", "/api/history", "/api/workers", "/api/failed", "/api/failed/orders/j1", "/api/config", "/api/nope"} {
		code, body := get(p)
		if code >= 500 {
			t.Errorf("GET %s = %d %s", p, code, body)
		}
		if strings.Contains(body, sentinel) {
			t.Errorf("GET %s leaks a secret: %s", p, body)
		}
	}
	req := httptest.NewRequest("POST", "http://127.0.0.1:8090/api/pipelines/S3NTINEL-dash/pause", nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || strings.Contains(rec.Body.String(), sentinel) {
		t.Errorf("POST without auth = %d %s", rec.Code, rec.Body)
	}
	var sess sessionReply
	if _, body := get("/api/session"); json.Unmarshal([]byte(body), &sess) != nil {
		t.Fatalf("session = %s", body)
	}
	for _, p := range []string{"/api/failed/orders/retry", "/api/failed/orders/remove"} {
		req = httptest.NewRequest("POST", "http://127.0.0.1:8090"+p, strings.NewReader(`{"ids":["j1","S3NTINEL-dash"]}`))
		req.SetBasicAuth("ops", "S3NTINEL-dash")
		req.Header.Set(csrfHeader, sess.CSRF)
		rec = httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK || strings.Contains(rec.Body.String(), sentinel) || !strings.Contains(rec.Body.String(), `"error"`) {
			t.Errorf("POST %s = %d %s, want an error without the secret", p, rec.Code, rec.Body)
		}
	}

	_, cfg := get("/api/config")
	for _, want := range []string{
		"DB_PASSWORD: '" + Masked, "API_TOKEN: '" + Masked, "postgres://app:" + Masked + "@db.internal/app",
		"amqp://guest:" + Masked + "@127.0.0.1:5672/", "username: kafkauser", "key: '" + Masked, "secret: '" + Masked,
		"region: eu-west-1", "user: ops", "APP_ENV: production", "is_token: false", "orders:",
	} {
		if !strings.Contains(cfg, strings.ReplaceAll(want, "'", "")) && !strings.Contains(cfg, want) {
			t.Errorf("config page lacks %q:\n%s", want, cfg)
		}
	}
}

// MaskedConfig: key names that hold secrets, and URL passwords, even
// in URLs net/url refuses.
func TestMaskRules(t *testing.T) {
	for k, want := range map[string]bool{"password": true, "DB_PASSWORD": true, "secret_key": true, "session_token": true,
		"access_key": true, "routing_key": false, "user": false, "is_token": true, "nonce": true} {
		if got := secretKey(k, nil); got != want {
			t.Errorf("secretKey(%s) = %v", k, got)
		}
	}
	if secretKey("key", map[string]bool{"cert": true}) || !secretKey("key", map[string]bool{"secret": true}) {
		t.Error("key is a secret only next to a secret")
	}
	for in, want := range map[string]string{
		"amqp://u:p4ss@h:5672/":         "amqp://u:" + Masked + "@h:5672/",
		"amqp://u:p%zz@h/ and more":     "amqp://u:" + Masked + "@h/ and more",
		"amqp://h:5672/":                "amqp://h:5672/",
		"see https://example.com/a@b":   "see https://example.com/a@b",
		"x redis://:onlypass@cache/0 y": "x redis://:" + Masked + "@cache/0 y",
	} {
		if got := redactURLs(in); got != want {
			t.Errorf("redactURLs(%q) = %q, want %q", in, got, want)
		}
	}
}
