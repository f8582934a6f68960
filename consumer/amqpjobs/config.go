package amqpjobs

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// Default values applied by Config.Defaults and Global.Defaults.
const (
	// DefaultAddr is the broker address when amqp.addr is absent.
	DefaultAddr = "amqp://guest:guest@127.0.0.1:5672/"
	// DefaultPrefetch is the basic.qos prefetch count.
	DefaultPrefetch = 10
	// DefaultPriority is the pipeline priority; jobs without rr_priority
	// get it. Lower numbers are more urgent (RoadRunner semantics).
	DefaultPriority int64 = 10
	// DefaultRedialTimeout is how long one series of reconnect attempts
	// may fail before the driver reports the outage at error level (it
	// keeps trying afterwards).
	DefaultRedialTimeout = 60 * time.Second
	// DefaultExchange is RoadRunner's default exchange name.
	DefaultExchange = "amqp.default"
	// DefaultExchangeType is the type of a declared exchange.
	DefaultExchangeType = "direct"
	// DefaultConfirmTimeout bounds the wait for one publisher confirm.
	DefaultConfirmTimeout = 30 * time.Second
)

// Exchange types accepted by Config.ExchangeType.
const (
	ExchangeDirect  = "direct"
	ExchangeFanout  = "fanout"
	ExchangeTopic   = "topic"
	ExchangeHeaders = "headers"
)

// Client auth types accepted by TLS.ClientAuthType (RoadRunner's names).
var clientAuthTypes = []string{
	"no_client_cert",
	"request_client_cert",
	"require_any_client_cert",
	"verify_client_cert_if_given",
	"require_and_verify_client_cert",
}

// Config holds the pipeline keys of an amqp pipeline
// (jobs.pipelines.<name>.config). The key names are RoadRunner's flat
// ("v1") amqp keys; Declare, JobHeader and ConfirmTimeout are ours.
// RoadRunner's nested version 2 format (ConfigV2) decodes onto the same
// fields (see ConfigV2.Flat).
type Config struct {
	// Version is RoadRunner's pipeline config format: 0 or 1 for these
	// flat keys. A version 2 config is decoded as ConfigV2 and flattened
	// into this struct (Version is 2 then).
	Version int `yaml:"version"`
	// Prefetch is the basic.qos prefetch count: the most deliveries the
	// broker sends before some are settled (default 10). They wait in the
	// driver ahead of the pipeline's free slots.
	Prefetch int `yaml:"prefetch"`
	// Priority is the pipeline priority (default 10).
	Priority int64 `yaml:"priority"`
	// RedialTimeout is how long a series of failed reconnect attempts
	// lasts before the outage is logged at error level; the driver keeps
	// redialling afterwards and Check reports the pipeline down meanwhile
	// (default 60s; an integer is seconds, as in RoadRunner).
	RedialTimeout time.Duration `yaml:"redial_timeout"`

	// Queue is the queue to consume. Empty makes a push-only pipeline.
	Queue string `yaml:"queue"`
	// Exchange jobs are published to (default "amqp.default").
	Exchange string `yaml:"exchange"`
	// ExchangeType is direct (default), fanout, topic or headers.
	ExchangeType string `yaml:"exchange_type"`
	// RoutingKey binds Queue to Exchange and routes published jobs. When
	// empty it defaults to Queue (see Key).
	RoutingKey string `yaml:"routing_key"`

	// Exclusive declares the queue exclusive to the connection.
	Exclusive bool `yaml:"exclusive"`
	// Durable declares the queue durable.
	Durable bool `yaml:"durable"`
	// ExchangeDurable declares the exchange durable.
	ExchangeDurable bool `yaml:"exchange_durable"`
	// ExchangeAutoDelete declares the exchange auto-delete.
	ExchangeAutoDelete bool `yaml:"exchange_auto_delete"`
	// QueueAutoDelete declares the queue auto-delete.
	QueueAutoDelete bool `yaml:"queue_auto_delete"`
	// DeleteQueueOnStop deletes the queue when the driver is closed.
	DeleteQueueOnStop bool `yaml:"delete_queue_on_stop"`
	// MultipleAck acks with multiple=true. The driver sets the flag only
	// when no earlier delivery of the channel is unsettled, so a multiple
	// ack never settles a job that another worker is still running. With
	// a prefetch of 8 or more the driver also holds acks for a moment and
	// writes them together that way, whatever this says.
	MultipleAck bool `yaml:"multiple_ack"`
	// RequeueOnFail is accepted for RoadRunner compatibility; failures are
	// settled by the pipeline's retry policy instead.
	RequeueOnFail bool `yaml:"requeue_on_fail"`
	// QueueHeaders are the queue-declare arguments, for example
	// x-queue-type: quorum or x-dead-letter-exchange. With
	// x-dead-letter-exchange and no pipeline dead_letter, Dead outcomes go
	// to that exchange through basic.nack(requeue=false).
	QueueHeaders map[string]any `yaml:"queue_headers"`
	// ConsumerID is the consumer tag; empty means one is generated.
	ConsumerID string `yaml:"consumer_id"`

	// Declare declares the exchange, the queue and its binding on every
	// (re)connect (default true). With false they must exist already.
	Declare *bool `yaml:"declare"`
	// ExchangeDeclare, when false, leaves the exchange undeclared (it must
	// exist); RoadRunner's key (exchange.declare in version 2). Unset
	// means Declare.
	ExchangeDeclare *bool `yaml:"exchange_declare"`
	// QueueDeclare, when false, neither declares the queue nor binds it
	// (both must exist); RoadRunner's key (queue.declare in version 2).
	// Unset means Declare.
	QueueDeclare *bool `yaml:"queue_declare"`
	// JobHeader names the message header that carries the job name for
	// messages without rr_job (third-party producers). When it is empty
	// or the header is missing, the job name is the routing key.
	JobHeader string `yaml:"job_header"`
	// ConfirmTimeout bounds the wait for the broker to confirm one publish
	// (default 30s).
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
}

// Defaults fills in zero fields with their default values.
func (c *Config) Defaults() {
	if c.Prefetch == 0 {
		c.Prefetch = DefaultPrefetch
	}
	if c.Priority == 0 {
		c.Priority = DefaultPriority
	}
	if c.RedialTimeout == 0 {
		c.RedialTimeout = DefaultRedialTimeout
	}
	if c.Exchange == "" {
		c.Exchange = DefaultExchange
	}
	if c.ExchangeType == "" {
		c.ExchangeType = DefaultExchangeType
	}
	if c.Declare == nil {
		yes := true
		c.Declare = &yes
	}
	if c.ConfirmTimeout == 0 {
		c.ConfirmTimeout = DefaultConfirmTimeout
	}
}

// Key returns the routing key: RoutingKey, or Queue when it is empty and
// the exchange is not fanout. (It is derived here rather than in Defaults,
// which runs before the keys are decoded.)
func (c *Config) Key() string {
	if c.RoutingKey == "" && c.ExchangeType != ExchangeFanout {
		return c.Queue
	}
	return c.RoutingKey
}

// Declares reports whether the driver declares its exchange and queue
// (Declare unset counts as true).
func (c *Config) Declares() bool { return c.Declare == nil || *c.Declare }

// DeclaresExchange reports whether the driver declares the exchange:
// ExchangeDeclare when set, else Declares.
func (c *Config) DeclaresExchange() bool {
	if c.ExchangeDeclare != nil {
		return *c.ExchangeDeclare
	}
	return c.Declares()
}

// DeclaresQueue reports whether the driver declares the queue and binds
// it to the exchange: QueueDeclare when set, else Declares.
func (c *Config) DeclaresQueue() bool {
	if c.QueueDeclare != nil {
		return *c.QueueDeclare
	}
	return c.Declares()
}

// MaxPrefetch is the largest basic.qos prefetch count (a 16-bit field).
const MaxPrefetch = 65535

// Clamp brings out-of-range values into range the way RoadRunner accepts
// them, and returns one *consumer.FieldError per change, for warnings: a
// negative prefetch or priority becomes its default (RoadRunner's for
// values <= 0), a prefetch above MaxPrefetch becomes MaxPrefetch (the
// wire field holds no more). Call it after decoding, before Validate.
func (c *Config) Clamp() []*consumer.FieldError {
	var out []*consumer.FieldError
	if c.Priority < 0 {
		out = append(out, &consumer.FieldError{Key: "priority", Reason: fmt.Sprintf("%d is below 1: using the default %d", c.Priority, DefaultPriority)})
		c.Priority = DefaultPriority
	}
	switch {
	case c.Prefetch < 0:
		out = append(out, &consumer.FieldError{Key: "prefetch", Reason: fmt.Sprintf("%d is below 1: using the default %d", c.Prefetch, DefaultPrefetch)})
		c.Prefetch = DefaultPrefetch
	case c.Prefetch > MaxPrefetch:
		out = append(out, &consumer.FieldError{Key: "prefetch", Reason: fmt.Sprintf("%d is above the AMQP limit: using %d", c.Prefetch, MaxPrefetch)})
		c.Prefetch = MaxPrefetch
	}
	return out
}

// Consumes reports whether the pipeline consumes (it has a queue); a
// pipeline without a queue can only publish.
func (c *Config) Consumes() bool { return c.Queue != "" }

// keepsPosition reports whether the queue puts a requeued message back at
// its position: classic queues do, quorum queues (RabbitMQ 3.10) append it.
func (c *Config) keepsPosition() bool {
	t, _ := c.QueueHeaders["x-queue-type"].(string)
	return t == "" || t == "classic"
}

// DeadLetterExchange returns the queue's x-dead-letter-exchange argument
// and whether it is set.
func (c *Config) DeadLetterExchange() (string, bool) {
	v, ok := c.QueueHeaders["x-dead-letter-exchange"]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; it returns nil when the config is usable. Call Defaults
// first: zero values are reported as invalid.
func (c *Config) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	switch c.Version {
	case 0, 1, 2:
	default:
		add("version", "must be 1 (flat keys) or 2 (exchange: and queue: mappings), got %d", c.Version)
	}
	if c.Prefetch <= 0 || c.Prefetch > 65535 {
		add("prefetch", "must be between 1 and 65535, got %d", c.Prefetch)
	}
	if c.Priority <= 0 {
		add("priority", "must be positive, got %d", c.Priority)
	}
	if c.RedialTimeout <= 0 {
		add("redial_timeout", "must be positive, got %s", c.RedialTimeout)
	}
	if c.ConfirmTimeout <= 0 {
		add("confirm_timeout", "must be positive, got %s", c.ConfirmTimeout)
	}
	switch c.ExchangeType {
	case ExchangeDirect, ExchangeFanout, ExchangeTopic, ExchangeHeaders:
	default:
		add("exchange_type", "must be direct, fanout, topic or headers; got %q", c.ExchangeType)
	}
	if c.Key() == "" && c.ExchangeType != ExchangeFanout {
		add("routing_key", "required unless exchange_type is fanout (or set queue, which it defaults to)")
	}
	if c.Queue != "" && strings.TrimSpace(c.Queue) != c.Queue {
		add("queue", "must not start or end with spaces")
	}
	for _, k := range []string{"queue", "exchange", "routing_key"} {
		v := map[string]string{"queue": c.Queue, "exchange": c.Exchange, "routing_key": c.RoutingKey}[k]
		if len(v) > 255 {
			add(k, "longer than 255 bytes")
		}
	}
	if c.Queue == "" && c.DeleteQueueOnStop {
		add("delete_queue_on_stop", "needs queue")
	}
	for k, v := range c.QueueHeaders {
		if _, err := tableValue(v); err != nil {
			add("queue_headers."+k, "%v", err)
		}
	}
	if v, ok := c.QueueHeaders["x-dead-letter-exchange"]; ok {
		if _, isString := v.(string); !isString {
			add("queue_headers.x-dead-letter-exchange", "must be a string, got %T", v)
		}
	}
	if c.Queue == "" && c.QueueHeaders != nil {
		add("queue_headers", "needs queue")
	}
	return errors.Join(errs...)
}

// Global is the top-level amqp: section shared by every amqp pipeline.
type Global struct {
	// Addr is the broker URL, amqp:// or amqps:// (default DefaultAddr).
	Addr string `yaml:"addr"`
	// TLS, when set, configures the amqps:// connection.
	TLS *TLS `yaml:"tls"`
}

// TLS holds PEM file paths. Key and Cert go together (client
// certificate); RootCA alone verifies the broker against a private CA.
// ClientAuthType is accepted for RoadRunner compatibility (it is a server
// setting) and only validated.
type TLS struct {
	Key            string `yaml:"key"`
	Cert           string `yaml:"cert"`
	RootCA         string `yaml:"root_ca"`
	ClientAuthType string `yaml:"client_auth_type"`
}

// Defaults fills in zero fields with their default values.
func (g *Global) Defaults() {
	if g.Addr == "" {
		g.Addr = DefaultAddr
	}
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; nil means usable. Call Defaults first.
func (g *Global) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	u, err := url.Parse(g.Addr)
	switch {
	case err != nil:
		// url.Parse's error quotes the whole address, password included.
		add("addr", "not a valid URL: %q (percent-encode special characters in the user and password, e.g. %% as %%25 and @ as %%40)", redact(g.Addr))
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		add("addr", "must start with amqp:// or amqps://, got %q", redact(g.Addr))
	case u.Host == "":
		add("addr", "has no host")
	}
	if g.TLS != nil {
		if (g.TLS.Key == "") != (g.TLS.Cert == "") {
			add("tls", "key and cert must be set together")
		}
		if g.TLS.ClientAuthType != "" && !slices.Contains(clientAuthTypes, g.TLS.ClientAuthType) {
			add("tls.client_auth_type", "must be one of %s; got %q", strings.Join(clientAuthTypes, ", "), g.TLS.ClientAuthType)
		}
		if err == nil && u.Scheme == "amqp" {
			add("tls", "needs an amqps:// addr")
		}
	}
	return errors.Join(errs...)
}

// redact hides the password of an AMQP URL for error messages and logs,
// also in an address that is not a valid URL: there everything between
// the user's ":" and the last "@" goes.
func redact(addr string) string {
	if u, err := url.Parse(addr); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
			return u.String()
		}
		return addr
	}
	scheme, rest, ok := strings.Cut(addr, "://")
	if !ok {
		scheme, rest = "", addr
	} else {
		scheme += "://"
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return addr
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return addr
	}
	return scheme + user + ":xxxxx" + rest[at:]
}

// ConfigV2 is RoadRunner's version 2 pipeline config (version: 2): the
// exchange and the queue as mappings of their own. Flat turns it into the
// Config the driver runs, with the same meaning as the flat keys.
type ConfigV2 struct {
	// Version is 2.
	Version       int           `yaml:"version"`
	Prefetch      int           `yaml:"prefetch"`
	Priority      int64         `yaml:"priority"`
	RedialTimeout time.Duration `yaml:"redial_timeout"`
	// Exchange is the exchange: mapping.
	Exchange ExchangeV2 `yaml:"exchange"`
	// Queue is the queue: mapping.
	Queue QueueV2 `yaml:"queue"`
	// JobHeader and ConfirmTimeout are Pipevisor's keys, as in Config.
	JobHeader      string        `yaml:"job_header"`
	ConfirmTimeout time.Duration `yaml:"confirm_timeout"`
}

// ExchangeV2 is the exchange: mapping of a version 2 config.
type ExchangeV2 struct {
	Name       string `yaml:"name"`
	Type       string `yaml:"type"`
	Durable    bool   `yaml:"durable"`
	AutoDelete bool   `yaml:"auto_delete"`
	// Declare false: the exchange must exist (default true).
	Declare *bool `yaml:"declare"`
}

// QueueV2 is the queue: mapping of a version 2 config.
type QueueV2 struct {
	Name          string         `yaml:"name"`
	RoutingKey    string         `yaml:"routing_key"`
	Durable       bool           `yaml:"durable"`
	AutoDelete    bool           `yaml:"auto_delete"`
	Exclusive     bool           `yaml:"exclusive"`
	DeleteOnStop  bool           `yaml:"delete_on_stop"`
	MultipleAck   bool           `yaml:"multiple_ack"`
	RequeueOnFail bool           `yaml:"requeue_on_fail"`
	ConsumerID    string         `yaml:"consumer_id"`
	Headers       map[string]any `yaml:"headers"`
	// Declare false: the queue and its binding must exist (default true).
	Declare *bool `yaml:"declare"`
}

// Flat returns the flat Config with the same meaning (Version 2). Call
// Config.Defaults on the result before use.
func (v *ConfigV2) Flat() Config {
	return Config{
		Version:            2,
		Prefetch:           v.Prefetch,
		Priority:           v.Priority,
		RedialTimeout:      v.RedialTimeout,
		Queue:              v.Queue.Name,
		Exchange:           v.Exchange.Name,
		ExchangeType:       v.Exchange.Type,
		RoutingKey:         v.Queue.RoutingKey,
		Exclusive:          v.Queue.Exclusive,
		Durable:            v.Queue.Durable,
		ExchangeDurable:    v.Exchange.Durable,
		ExchangeAutoDelete: v.Exchange.AutoDelete,
		QueueAutoDelete:    v.Queue.AutoDelete,
		DeleteQueueOnStop:  v.Queue.DeleteOnStop,
		MultipleAck:        v.Queue.MultipleAck,
		RequeueOnFail:      v.Queue.RequeueOnFail,
		QueueHeaders:       v.Queue.Headers,
		ConsumerID:         v.Queue.ConsumerID,
		ExchangeDeclare:    v.Exchange.Declare,
		QueueDeclare:       v.Queue.Declare,
		JobHeader:          v.JobHeader,
		ConfirmTimeout:     v.ConfirmTimeout,
	}
}

// v1ToV2 maps each flat key to where a version 2 config writes it ("" for
// keys a version 2 config has no place for).
var v1ToV2 = map[string]string{
	"queue":                "queue.name",
	"exchange":             "exchange.name",
	"exchange_type":        "exchange.type",
	"routing_key":          "queue.routing_key",
	"exclusive":            "queue.exclusive",
	"durable":              "queue.durable",
	"exchange_durable":     "exchange.durable",
	"exchange_auto_delete": "exchange.auto_delete",
	"queue_auto_delete":    "queue.auto_delete",
	"delete_queue_on_stop": "queue.delete_on_stop",
	"multiple_ack":         "queue.multiple_ack",
	"requeue_on_fail":      "queue.requeue_on_fail",
	"queue_headers":        "queue.headers",
	"consumer_id":          "queue.consumer_id",
	"exchange_declare":     "exchange.declare",
	"queue_declare":        "queue.declare",
	"declare":              "exchange.declare and queue.declare",
}

// V2Key returns where a version 2 config writes the flat key key (or a
// key below it, as in "queue_headers.x-max-priority"), and whether the
// key is a flat-only one. Keys shared by both formats (prefetch,
// priority, redial_timeout, version, job_header, confirm_timeout) return
// themselves and false.
func V2Key(key string) (string, bool) {
	head, rest, _ := strings.Cut(key, ".")
	v2, ok := v1ToV2[head]
	if !ok {
		return key, false
	}
	if rest != "" {
		return v2 + "." + rest, true
	}
	return v2, true
}
