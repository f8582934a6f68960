package kafkajobs

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// connHealth is a kgo hook that remembers whether the brokers answer: a
// failed connection makes Check fail until a later connection or read
// succeeds. kgo retries fetches and metadata on its own and never reports
// an unreachable cluster to a poll, so this is how /ready learns of it.
type connHealth struct {
	mu      sync.Mutex
	lastErr error
}

var (
	_ kgo.HookBrokerConnect = (*connHealth)(nil)
	_ kgo.HookBrokerRead    = (*connHealth)(nil)
)

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (h *connHealth) OnBrokerConnect(meta kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.lastErr = fmt.Errorf("kafkajobs: connect to broker %s:%d: %w", meta.Host, meta.Port, err)
		return
	}
	h.lastErr = nil
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (h *connHealth) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = nil
}

func (h *connHealth) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastErr
}

// lineErrors is errors.Join with a one-line message: the parts are
// separated by "; " and newlines inside them become spaces, so that a
// driver error fits one cell of `jobs stat` and one log field. It unwraps
// to every part.
type lineErrors struct{ errs []error }

// joinLine joins the non-nil errs like errors.Join, with a one-line
// message; nil when every err is nil.
func joinLine(errs ...error) error {
	var kept []error
	for _, err := range errs {
		if err != nil {
			kept = append(kept, err)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return &lineErrors{errs: kept}
}

func (e *lineErrors) Error() string {
	parts := make([]string, len(e.errs))
	for i, err := range e.errs {
		parts[i] = oneLine(err.Error())
	}
	return strings.Join(parts, "; ")
}

func (e *lineErrors) Unwrap() []error { return e.errs }

// oneLine replaces the line breaks of s (errors.Join puts one between
// joined errors) with "; ".
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' }), "; ")
}
