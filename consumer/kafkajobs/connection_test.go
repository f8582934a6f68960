package kafkajobs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/pipevisor/pipevisor/consumer"
)

// writeCA writes a self-signed CA certificate as PEM and returns its path.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientFor builds (without connecting) the client New would build.
func clientFor(t *testing.T, g Global, cfg Config) *kgo.Client {
	t.Helper()
	g.Defaults()
	cfg.Defaults()
	opts, err := clientOpts(g, cfg)
	if err != nil {
		t.Fatalf("clientOpts: %v", err)
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestTLSTimeoutIsTheDialTimeout: tls.timeout bounds dialing a broker
// (default 10s), and TLS is on only when a certificate or root CA is named.
func TestTLSTimeoutIsTheDialTimeout(t *testing.T) {
	ca := writeCA(t)
	brokers := []string{"127.0.0.1:1"}
	cl := clientFor(t, Global{Brokers: brokers, TLS: &TLS{RootCA: ca, Timeout: 7 * time.Second}}, Config{})
	if got := cl.OptValue(kgo.DialTimeout); got != 7*time.Second {
		t.Fatalf("dial timeout %v, want 7s", got)
	}
	if tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); tc == nil || tc.RootCAs == nil {
		t.Fatalf("TLS config %v, want one with the root CA", tc)
	}
	cl = clientFor(t, Global{Brokers: brokers, TLS: &TLS{RootCA: ca}}, Config{})
	if got := cl.OptValue(kgo.DialTimeout); got != DefaultTLSTimeout {
		t.Fatalf("default dial timeout %v, want %v", got, DefaultTLSTimeout)
	}
	g := Global{Brokers: brokers, TLS: &TLS{Timeout: 7 * time.Second}}
	cl = clientFor(t, g, Config{})
	if tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config); tc != nil {
		t.Fatal("tls with neither certificate nor root_ca must not turn TLS on (RoadRunner's rule)")
	}
	if keys := fieldKeys(t, g.Warnings()); len(keys) != 1 || keys[0] != "tls" {
		t.Fatalf("warnings %q, want one about tls", keys)
	}
}

// TestPipelineOverridesConnection: a pipeline's own sasl_options (what
// Declare sends) and brokers replace the kafka: section's.
func TestPipelineOverridesConnection(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders"),
		kfake.EnableSASL(), kfake.Superuser("PLAIN", "app", "secret"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	global := Global{Brokers: []string{"127.0.0.1:1"}, Ping: Ping{Timeout: 2 * time.Second},
		SASL: &SASL{Mechanism: SASLPlain, Username: "app", Password: "wrong"}}
	cfg := Config{
		ConsumerOptions: ConsumerOptions{Topics: []string{"orders"}},
		Brokers:         c.ListenAddrs(),
		SASLOptions:     &SASL{Mechanism: SASLPlain, Username: "app", Password: "secret"},
	}
	d, err := New(testCtx(t, 5*time.Second), "orders", global, cfg, "", nil)
	if err != nil {
		t.Fatalf("New with the pipeline's brokers and sasl_options: %v", err)
	}
	t.Cleanup(func() { _ = d.Close(testCtx(t, 5*time.Second)) })
	publish(t, d, consumer.Job{ID: "1"})
	settle(t, receive(t, d), consumer.Outcome{Action: consumer.Ack})
}

// TestConfigWarnings names what is accepted but ignored.
func TestConfigWarnings(t *testing.T) {
	c := Config{
		Topic:           "t",
		ProducerOptions: ProducerOptions{TransactionTimeout: time.Second, PartitioningStrategy: "Sticky"},
		ConsumerOptions: ConsumerOptions{
			Topics:            []string{"a"},
			ConsumePartitions: map[string]PartitionOffsets{"b": {0: {Type: OffsetAtStart}}},
		},
		GroupOptions: GroupOptions{GroupID: "g"},
		TLS:          &TLS{RootCA: "ca.pem", ClientAuthType: "no_client_cert"},
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	want := []string{"consumer_options.consume_partitions", "producer_options.partitioning_strategy",
		"producer_options.transaction_timeout", "tls.client_auth_type", "topic"}
	if got := fieldKeys(t, c.Warnings()); !slices.Equal(got, want) {
		t.Fatalf("warnings %q, want %q", got, want)
	}
	c.ConsumerOptions.Topics = nil
	if got := fieldKeys(t, c.Validate()); !slices.Equal(got, []string{"consumer_options.consume_partitions"}) {
		t.Fatalf("consume_partitions with a group: %q", got)
	}
}

// TestSASLMechanismNames: each sasl.mechanism builds franz-go's mechanism
// of that name (aws_msk_iam signs in with IAM).
func TestSASLMechanismNames(t *testing.T) {
	for mech, want := range map[string]string{
		SASLPlain: "PLAIN", SASLScramSHA256: "SCRAM-SHA-256", SASLScramSHA512: "SCRAM-SHA-512", SASLAWSMSKIAM: "AWS_MSK_IAM",
	} {
		s := &SASL{Mechanism: mech, Username: "u", Password: "p", Zid: "z", Nonce: "n", AccessKey: "a", SecretKey: "s"}
		if err := errors.Join(validateSASL("sasl", s)...); err != nil {
			t.Fatalf("%s: %v", mech, err)
		}
		if got := saslMechanism(s).Name(); got != want {
			t.Errorf("%s: mechanism %s, want %s", mech, got, want)
		}
	}
	if keys := fieldKeys(t, errors.Join(validateSASL("sasl", &SASL{Mechanism: SASLAWSMSKIAM, AccessKey: "a"})...)); !slices.Equal(keys, []string{"sasl.access_key"}) {
		t.Fatalf("an access_key without secret_key: %q", keys)
	}
}

// TestLegacyClientAndGroupKeys: RoadRunner 2.x's client_id names the
// client, and session_timeout and heartbeat_interval (seconds) are the
// group's timers.
func TestLegacyClientAndGroupKeys(t *testing.T) {
	cfg := Config{Topic: "t", Legacy: Legacy{GroupID: "g", ClientID: "my-app", SessionTimeout: 12, HeartbeatInterval: 2}}
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g := Global{Brokers: []string{"127.0.0.1:1"}}
	g.Defaults()
	opts, err := clientOpts(g, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := &Driver{cfg: cfg}
	cl, err := kgo.NewClient(append(opts, d.consumeOpts()...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	if got := cl.OptValue(kgo.ClientID); got != "my-app" {
		t.Errorf("client id %v", got)
	}
	if got := cl.OptValue(kgo.SessionTimeout); got != 12*time.Second {
		t.Errorf("session timeout %v", got)
	}
	if got := cl.OptValue(kgo.HeartbeatInterval); got != 2*time.Second {
		t.Errorf("heartbeat interval %v", got)
	}
	if got := cl.OptValue(kgo.ConsumerGroup); got != "g" {
		t.Errorf("group %v", got)
	}
}
