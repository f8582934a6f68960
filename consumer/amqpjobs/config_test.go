package amqpjobs

import (
	"errors"
	"slices"
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
