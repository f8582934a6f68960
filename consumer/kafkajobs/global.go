package kafkajobs

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
)

// DefaultTLSTimeout bounds dialing a broker over TLS when tls.timeout is
// not set.
const DefaultTLSTimeout = 10 * time.Second

// Global is the top-level kafka: section shared by every kafka pipeline.
// A pipeline may override brokers, tls, sasl and ping in its own config,
// as RoadRunner allows (see Config.Connection).
type Global struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string `yaml:"brokers"`
	// Addrs is RoadRunner 2.x's name for Brokers, used when Brokers is
	// empty.
	Addrs []string `yaml:"addrs"`
	Ping  Ping     `yaml:"ping"`
	// TLS dials the brokers over TLS when it names a client certificate
	// (key and cert) or a root_ca, as in RoadRunner; a tls section with
	// neither leaves connections in plain text (Warnings says so).
	TLS *TLS `yaml:"tls"`
	// SASL, when set, authenticates every connection.
	SASL *SASL `yaml:"sasl"`
}

// Ping configures the connectivity check New runs before it returns.
type Ping struct {
	// Timeout bounds the check (default 10s).
	Timeout time.Duration `yaml:"timeout"`
}

// TLS holds PEM file paths. Key and Cert go together (client
// certificate); RootCA verifies the brokers against a private CA (added
// to the system roots, as RoadRunner does).
type TLS struct {
	// Timeout bounds dialing one broker, TLS handshake included
	// (default DefaultTLSTimeout).
	Timeout time.Duration `yaml:"timeout"`
	Key     string        `yaml:"key"`
	Cert    string        `yaml:"cert"`
	RootCA  string        `yaml:"root_ca"`
	// ClientAuthType is accepted for RoadRunner compatibility and has no
	// effect: it is a server-side setting (whether a server asks clients
	// for certificates), and a Kafka client never acts as a TLS server.
	ClientAuthType string `yaml:"client_auth_type"`
}

// enabled reports whether t turns TLS on: a client certificate or a root
// CA is named (RoadRunner's rule).
func (t *TLS) enabled() bool {
	return t != nil && ((t.Key != "" && t.Cert != "") || t.RootCA != "")
}

// SASL mechanisms accepted by SASL.Mechanism.
const (
	SASLPlain       = "plain"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
	// SASLAWSMSKIAM signs in to Amazon MSK with IAM: the credentials of
	// the AWS default chain (environment, shared config, instance role)
	// when it has some, else AccessKey, SecretKey and SessionToken.
	SASLAWSMSKIAM = "aws_msk_iam"
)

// SASL holds the credentials for one SASL mechanism (RoadRunner's keys).
type SASL struct {
	Mechanism string `yaml:"mechanism"`
	// Username, Password, Zid (authorization id): plain and SCRAM.
	Username string `yaml:"username"`
	Password string `yaml:"password"`
	Zid      string `yaml:"zid"`
	// Nonce and IsToken: SCRAM only (IsToken for delegation tokens).
	Nonce   string `yaml:"nonce"`
	IsToken bool   `yaml:"is_token"`
	// AccessKey, SecretKey, SessionToken, UserAgent: aws_msk_iam only.
	AccessKey    string `yaml:"access_key"`
	SecretKey    string `yaml:"secret_key"`
	SessionToken string `yaml:"session_token"`
	UserAgent    string `yaml:"user_agent"`
}

// Defaults fills in zero fields with their default values.
func (g *Global) Defaults() {
	if len(g.Brokers) == 0 {
		g.Brokers = g.Addrs
	}
	if g.Ping.Timeout == 0 {
		g.Ping.Timeout = DefaultPingTimeout
	}
	if g.TLS != nil && g.TLS.Timeout == 0 {
		g.TLS.Timeout = DefaultTLSTimeout
	}
}

// Validate reports every problem as a *consumer.FieldError, joined with
// errors.Join; nil means usable. Call Defaults first.
func (g *Global) Validate() error {
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: fmt.Sprintf(format, args...)})
	}
	if len(g.Brokers) == 0 {
		add("brokers", "at least one broker is required")
	}
	for i, b := range g.Brokers {
		if strings.TrimSpace(b) == "" {
			add(fmt.Sprintf("brokers[%d]", i), "must not be empty")
		}
	}
	if g.Ping.Timeout <= 0 {
		add("ping.timeout", "must be positive, got %s", g.Ping.Timeout)
	}
	errs = append(errs, validateTLS("tls", g.TLS)...)
	errs = append(errs, validateSASL("sasl", g.SASL)...)
	return errors.Join(errs...)
}

// Warnings returns the settings of g that are accepted but have no
// effect, as *consumer.FieldError values joined with errors.Join (nil
// when there are none).
func (g *Global) Warnings() error {
	return errors.Join(tlsWarnings("tls", g.TLS)...)
}

func validateTLS(key string, t *TLS) []error {
	if t == nil {
		return nil
	}
	var errs []error
	if (t.Key == "") != (t.Cert == "") {
		errs = append(errs, &consumer.FieldError{Key: key, Reason: "key and cert must be set together"})
	}
	if t.Timeout < 0 {
		errs = append(errs, &consumer.FieldError{Key: key + ".timeout", Reason: fmt.Sprintf("must not be negative, got %s", t.Timeout)})
	}
	switch t.ClientAuthType {
	case "", "no_client_cert", "request_client_cert", "require_any_client_cert",
		"verify_client_cert_if_given", "require_and_verify_client_cert":
	default:
		errs = append(errs, &consumer.FieldError{Key: key + ".client_auth_type", Reason: fmt.Sprintf(
			"must be no_client_cert, request_client_cert, require_any_client_cert, verify_client_cert_if_given or require_and_verify_client_cert; got %q", t.ClientAuthType)})
	}
	return errs
}

func tlsWarnings(key string, t *TLS) []error {
	if t == nil {
		return nil
	}
	var out []error
	if t.ClientAuthType != "" {
		out = append(out, &consumer.FieldError{Key: key + ".client_auth_type",
			Reason: "ignored: it is a TLS server setting; the driver is a TLS client"})
	}
	if !t.enabled() {
		out = append(out, &consumer.FieldError{Key: key,
			Reason: "names neither key and cert nor root_ca: brokers are dialed without TLS (as in RoadRunner)"})
	}
	return out
}

func validateSASL(key string, s *SASL) []error {
	if s == nil {
		return nil
	}
	var errs []error
	add := func(sub, format string, args ...any) {
		errs = append(errs, &consumer.FieldError{Key: key + "." + sub, Reason: fmt.Sprintf(format, args...)})
	}
	switch s.Mechanism {
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if s.Username == "" {
			add("username", "is required for %s", s.Mechanism)
		}
	case SASLAWSMSKIAM:
		if (s.AccessKey == "") != (s.SecretKey == "") {
			add("access_key", "access_key and secret_key must be set together")
		}
	default:
		add("mechanism", "must be %s, %s, %s or %s; got %q", SASLPlain, SASLScramSHA256, SASLScramSHA512, SASLAWSMSKIAM, s.Mechanism)
	}
	return errs
}

// Connection returns g with the pipeline's own brokers, tls, sasl (or
// sasl_options, Declare's name for it) and ping put in place of the
// global ones, as RoadRunner reads a pipeline's config over the kafka:
// section.
func (g Global) Connection(c Config) Global {
	if len(c.Brokers) > 0 {
		g.Brokers = c.Brokers
	}
	if c.TLS != nil {
		g.TLS = c.TLS
	}
	if c.SASL != nil {
		g.SASL = c.SASL
	}
	if c.SASLOptions != nil {
		g.SASL = c.SASLOptions
	}
	if c.Ping != nil && c.Ping.Timeout > 0 {
		g.Ping = *c.Ping
	}
	return g
}
