package amqpjobs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

func TestConfigDefaults(t *testing.T) {
	c := Config{Queue: "q"}
	c.Defaults()
	if c.Prefetch != 10 || c.Priority != 10 || c.RedialTimeout != time.Minute ||
		c.Exchange != "amqp.default" || c.ExchangeType != "direct" || c.Key() != "q" ||
		!c.Declares() || c.ConfirmTimeout != 30*time.Second {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of defaults: %v", err)
	}

	no := false
	c = Config{Queue: "q", Declare: &no, ExchangeType: "fanout"}
	c.Defaults()
	if c.Declares() || c.Key() != "" {
		t.Errorf("declare false / fanout routing key: %+v", c)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate of a fanout pipeline: %v", err)
	}

	var g Global
	g.Defaults()
	if g.Addr != DefaultAddr {
		t.Errorf("addr = %q", g.Addr)
	}
	if err := g.Validate(); err != nil {
		t.Errorf("Validate of default global: %v", err)
	}
}

// fieldKeys returns the keys of every *consumer.FieldError in err.
func fieldKeys(t *testing.T, err error) []string {
	t.Helper()
	var keys []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var fe *consumer.FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %v is not a *consumer.FieldError", e)
		}
		keys = append(keys, fe.Key)
	}
	slices.Sort(keys)
	return keys
}

func TestConfigValidate(t *testing.T) {
	c := Config{
		Prefetch:       -1,
		Priority:       -2,
		RedialTimeout:  -time.Second,
		ConfirmTimeout: -time.Second,
		ExchangeType:   "weird",
		Exchange:       "x",
		QueueHeaders:   map[string]any{"x-dead-letter-exchange": 5, "x-bad": struct{}{}},
	}
	c.Defaults()
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted a broken config")
	}
	want := []string{"confirm_timeout", "exchange_type", "prefetch", "priority", "queue_headers",
		"queue_headers.x-bad", "queue_headers.x-dead-letter-exchange", "redial_timeout", "routing_key"}
	if got := fieldKeys(t, err); !slices.Equal(got, want) {
		t.Errorf("error keys = %q, want %q\n%v", got, want, err)
	}

	g := Global{Addr: "http://host/", TLS: &TLS{Key: "k", ClientAuthType: "nope"}}
	err = g.Validate()
	if got, want := fieldKeys(t, err), []string{"addr", "tls", "tls.client_auth_type"}; !slices.Equal(got, want) {
		t.Errorf("global error keys = %q, want %q\n%v", got, want, err)
	}
	g = Global{Addr: "amqp://u:secret@h/", TLS: &TLS{RootCA: "ca.pem"}}
	err = g.Validate()
	if got, want := fieldKeys(t, err), []string{"tls"}; !slices.Equal(got, want) {
		t.Errorf("tls over amqp:// keys = %q, want %q", got, want)
	}
}

func TestTableValue(t *testing.T) {
	args := queueArgs(map[string]any{
		"x-max-priority": float64(10), // from JSON (jobs.Declare)
		"x-queue-type":   "quorum",
		"x-message-ttl":  60000, // from YAML
		"nested":         map[string]any{"a": []any{1, "b"}},
	})
	want := amqp.Table{
		"x-max-priority": int64(10),
		"x-queue-type":   "quorum",
		"x-message-ttl":  int64(60000),
		"nested":         amqp.Table{"a": []any{int64(1), "b"}},
	}
	if err := args.Validate(); err != nil {
		t.Fatalf("table rejected by amqp091: %v", err)
	}
	for k, v := range want {
		if stringify(args[k]) != stringify(v) {
			t.Errorf("%s = %#v, want %#v", k, args[k], v)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact("amqp://guest:secret@h:5672/v"); got != "amqp://guest:xxxxx@h:5672/v" {
		t.Errorf("redact = %q", got)
	}
}

// writePEM writes a self-signed certificate and its key into dir.
func writePEM(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pv-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePEM(t, dir)
	c, err := tlsConfig(Global{TLS: &TLS{Cert: cert, Key: key, RootCA: cert}})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Errorf("tls config: %d certificates, root CAs %v", len(c.Certificates), c.RootCAs)
	}
	if c, err := tlsConfig(Global{}); c != nil || err != nil {
		t.Errorf("no tls section: %v, %v", c, err)
	}
	if _, err := tlsConfig(Global{TLS: &TLS{RootCA: key}}); err == nil {
		t.Error("a key file accepted as root CA")
	}
	if _, err := New(context.Background(), "x", Global{Addr: "amqps://h/", TLS: &TLS{RootCA: filepath.Join(dir, "missing.pem")}}, Config{Queue: "q"}, "", nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("New with a missing root CA = %v, want ErrInvalidConfig", err)
	}
}

// No error or log text about the address shows its password, whether the
// address parses or not.
func TestAddrErrorsNeverShowThePassword(t *testing.T) {
	const secret = "S3ntinel%ss"
	for _, addr := range []string{
		"amqp://app:" + secret + "@127.0.0.1:5672/",   // unescaped %: not a URL
		"http://app:" + secret + "@127.0.0.1:5672/",   // wrong scheme
		"amqp://app:" + secret + "@/",                 // no host
		"amqp://app:" + secret + "@127.0.0.1:1/?x=@y", // an @ after the host
		"amqps://app:S3ntinel@p@127.0.0.1:5672/%zz",   // an @ in the password
	} {
		g := Global{Addr: addr}
		g.Defaults()
		var msgs []string
		if err := g.Validate(); err != nil {
			msgs = append(msgs, err.Error())
		}
		msgs = append(msgs, redact(addr))
		if _, err := New(context.Background(), "p", g, Config{Queue: "q", RoutingKey: "q"}, "", nil); err != nil {
			msgs = append(msgs, err.Error())
		}
		for _, m := range msgs {
			if strings.Contains(m, "S3ntinel") {
				t.Errorf("addr %q: the password shows in %q", addr, m)
			}
		}
	}
}
