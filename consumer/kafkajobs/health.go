package kafkajobs

import (
	"fmt"
	"net"
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
