package kafkajobs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/pipevisor/pipevisor/consumer"
)

func TestSASLMechanisms(t *testing.T) {
	for _, tc := range []struct{ mechanism, kfakeMethod string }{
		{SASLPlain, "PLAIN"},
		{SASLScramSHA256, "SCRAM-SHA-256"},
		{SASLScramSHA512, "SCRAM-SHA-512"},
	} {
		t.Run(tc.mechanism, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"),
				kfake.EnableSASL(), kfake.Superuser(tc.kfakeMethod, "app", "secret"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(c.Close)
			g := Global{Brokers: c.ListenAddrs(), Ping: Ping{Timeout: 2 * time.Second},
				SASL: &SASL{Mechanism: tc.mechanism, Username: "app", Password: "secret"}}
			cfg := Config{ConsumerOptions: ConsumerOptions{Topics: []string{"orders"}}}
			cfg.GroupOptions.GroupID = testGroup
			d, err := New(testCtx(t, 5*time.Second), "orders", g, cfg, "", nil)
			if err != nil {
				t.Fatalf("New with %s: %v", tc.mechanism, err)
			}
			t.Cleanup(func() { _ = d.Close(testCtx(t, 5*time.Second)) })
			publish(t, d, consumer.Job{ID: "1"})
			settle(t, receive(t, d), consumer.Outcome{Action: consumer.Ack})

			g.SASL.Password = "wrong"
			if _, err := New(testCtx(t, 5*time.Second), "orders", g, cfg, "", nil); !errors.Is(err, ErrUnreachable) {
				t.Fatalf("New with a wrong password: %v, want ErrUnreachable", err)
			}
		})
	}
}

func TestTLSFilesAreChecked(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]*TLS{
		"missing root_ca": {RootCA: filepath.Join(dir, "nope.pem")},
		"root_ca not PEM": {RootCA: notPEM},
		"missing pair":    {Cert: filepath.Join(dir, "c.pem"), Key: filepath.Join(dir, "k.pem")},
	} {
		t.Run(name, func(t *testing.T) {
			g := Global{Brokers: []string{"127.0.0.1:1"}, TLS: tc}
			if _, err := New(testCtx(t, 2*time.Second), "p", g, Config{}, "", nil); err == nil || errors.Is(err, ErrUnreachable) {
				t.Fatalf("New with %s: %v, want a TLS file error", name, err)
			}
		})
	}
}
