package amqpjobs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/pipevisor/pipevisor/consumer"
)

// handshakeTimeout bounds the TCP connect and the AMQP handshake of one
// dial when the caller's context has no earlier deadline.
const handshakeTimeout = 30 * time.Second

// Backoff between failed dials: doubling from redialMin up to redialMax.
const (
	redialMin = 100 * time.Millisecond
	redialMax = 5 * time.Second
)

// session is one live connection pair and, for a consuming pipeline, the
// channel that consumes and settles. A delivery belongs to the session it
// came from; once the session is dead its deliveries cannot be settled
// (the broker has requeued them already).
//
// Publishes go over a connection of their own (pubConn): when RabbitMQ
// blocks publishers (memory or disk alarm) it stops reading from their
// connections, and acks must keep flowing meanwhile. A push-only pipeline
// has one connection (pubConn == conn).
type session struct {
	gen     uint64
	conn    *amqp.Connection // consume, settle, declare, stat
	pubConn *amqp.Connection // confirmed publishes
	ch      *amqp.Channel    // consume and settle channel; nil for push-only

	connClosed    chan *amqp.Error
	pubConnClosed chan *amqp.Error // nil when pubConn == conn
	blocked       chan amqp.Blocking
	chClosed      chan *amqp.Error
	cancelled     chan string

	done     chan struct{} // closed by kill
	killOnce sync.Once

	// tracks: keep unsettled (multiple_ack, or acks held: ackbatch.go).
	tracks    bool
	mu        sync.Mutex
	unsettled map[uint64]struct{} // tags taken from the feed, not settled
	acks      ackState            // acks held for one write (ackbatch.go)
	feed      *feed               // non-nil while consuming

	statMu sync.Mutex
	statCh *amqp.Channel // passive declares of Stat; nil until first used
}

// dead reports whether the session was killed or its channel closed.
func (s *session) dead() bool {
	select {
	case <-s.done:
		return true
	default:
	}
	return s.ch != nil && s.ch.IsClosed()
}

// kill marks the session dead and closes its connections (idempotent).
func (s *session) kill() {
	s.killOnce.Do(func() {
		close(s.done)
		_ = s.conn.Close()
		if s.pubConn != nil && s.pubConn != s.conn {
			_ = s.pubConn.Close()
		}
	})
}

// track records a delivery tag taken from the feed. Only multiple acks
// need the set (see ack); without them track and untrack do nothing.
func (s *session) track(tag uint64) {
	if !s.tracks {
		return
	}
	s.mu.Lock()
	s.unsettled[tag] = struct{}{}
	s.mu.Unlock()
}

// untrack forgets tag.
func (s *session) untrack(tag uint64) {
	if !s.tracks {
		return
	}
	s.mu.Lock()
	delete(s.unsettled, tag)
	s.mu.Unlock()
}

// ack settles tag as acked. Without tracking it sends basic.ack for tag
// alone. With tracking (multiple_ack, or acks held: ackbatch.go) the ack
// is held when hold is set and the session holds acks, and is otherwise
// written at once with the held ones (flushLocked): multiple=true covers
// only tags below the lowest unsettled one, and that check, the frames
// and forgetting the tags happen under s.mu, so a multiple ack can never
// cover a tag whose own settle frame has not gone out yet (it would ack a
// job meant for a retry, or make the broker close the channel over the
// second ack of one tag).
func (s *session) ack(tag uint64, hold bool) error {
	if !s.tracks {
		return s.ch.Ack(tag, false)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ackLocked(tag, hold)
}

// nack sends basic.nack for tag alone; with multiple_ack the tag stays
// unsettled until the frame has gone out (see ack).
func (s *session) nack(tag uint64, requeue bool) error {
	if !s.tracks {
		return s.ch.Nack(tag, false, requeue)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.ch.Nack(tag, false, requeue)
	delete(s.unsettled, tag)
	return err
}

// tlsConfig builds the client TLS configuration of g (nil without tls).
func tlsConfig(g Global) (*tls.Config, error) {
	if g.TLS == nil {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if g.TLS.RootCA != "" {
		pem, err := os.ReadFile(g.TLS.RootCA)
		if err != nil {
			return nil, fmt.Errorf("amqpjobs: tls.root_ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("amqpjobs: tls.root_ca %s: no PEM certificate found", g.TLS.RootCA)
		}
		c.RootCAs = pool
	}
	if g.TLS.Cert != "" {
		cert, err := tls.LoadX509KeyPair(g.TLS.Cert, g.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("amqpjobs: tls.cert/key: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}

// dial opens a connection to the broker; ctx bounds the TCP connect and
// the handshake.
func (d *Driver) dial(ctx context.Context, role string) (*amqp.Connection, error) {
	deadline := time.Now().Add(handshakeTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	cfg := amqp.Config{
		TLSClientConfig: d.tls,
		Heartbeat:       10 * time.Second,
		Properties:      amqp.Table{"connection_name": "pipevisor " + d.name + " " + role},
		Dial: func(network, addr string) (net.Conn, error) {
			var nd net.Dialer
			c, err := nd.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by amqp091 once the handshake is done.
			if err := c.SetDeadline(deadline); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		},
	}
	conn, err := amqp.DialConfig(d.g.Addr, cfg)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", redact(d.g.Addr), err)
	}
	return conn, nil
}

// connect dials and sets the session up: declares (when configured), and
// opens the consume channel with its Qos. It does not start consuming.
func (d *Driver) connect(ctx context.Context, gen uint64) (*session, error) {
	role := "publish"
	if d.cfg.Consumes() {
		role = "consume"
	}
	conn, err := d.dial(ctx, role)
	if err != nil {
		return nil, err
	}
	s := &session{
		gen:        gen,
		conn:       conn,
		pubConn:    conn,
		connClosed: conn.NotifyClose(make(chan *amqp.Error, 1)),
		done:       make(chan struct{}),
		unsettled:  map[uint64]struct{}{},
		tracks:     d.cfg.MultipleAck || ackBatch(d.cfg.Prefetch) > 1,
	}
	if n := ackBatch(d.cfg.Prefetch); n > 1 {
		s.acks.limit = n
	}
	s.acks.kick = d.ackKick
	s.acks.delay = d.ackDelay
	if d.cfg.Consumes() {
		pc, err := d.dial(ctx, "publish")
		if err != nil {
			s.kill()
			return nil, err
		}
		s.pubConn = pc
		s.pubConnClosed = pc.NotifyClose(make(chan *amqp.Error, 1))
	}
	s.blocked = s.pubConn.NotifyBlocked(make(chan amqp.Blocking, 4))
	if err := d.setup(s); err != nil {
		s.kill()
		return nil, err
	}
	return s, nil
}

// setup declares the topology and opens the consume channel of s.
func (d *Driver) setup(s *session) error {
	if d.cfg.DeclaresExchange() || d.cfg.DeclaresQueue() {
		if err := d.declare(s.conn); err != nil {
			return err
		}
	}
	if !d.cfg.Consumes() {
		return nil
	}
	ch, err := s.conn.Channel()
	if err != nil {
		return fmt.Errorf("open consume channel: %w", err)
	}
	if err := ch.Qos(d.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("basic.qos(%d): %w", d.cfg.Prefetch, err)
	}
	s.ch = ch
	s.chClosed = ch.NotifyClose(make(chan *amqp.Error, 1))
	s.cancelled = ch.NotifyCancel(make(chan string, 1))
	return nil
}

// declare declares the exchange (unless DeclaresExchange is false), the
// queue and its binding (unless DeclaresQueue is false) on a channel of
// its own (a failed declare closes the channel it ran on).
func (d *Driver) declare(conn *amqp.Connection) error {
	return withChannel(conn, func(ch *amqp.Channel) error {
		c := d.cfg
		if c.DeclaresExchange() && userExchange(c.Exchange) {
			if err := ch.ExchangeDeclare(c.Exchange, c.ExchangeType, c.ExchangeDurable, c.ExchangeAutoDelete, false, false, nil); err != nil {
				return fmt.Errorf("declare exchange %q: %w", c.Exchange, err)
			}
		}
		if c.Queue == "" || !c.DeclaresQueue() {
			return nil
		}
		if _, err := ch.QueueDeclare(c.Queue, c.Durable, c.QueueAutoDelete, c.Exclusive, false, queueArgs(c.QueueHeaders)); err != nil {
			return fmt.Errorf("declare queue %q: %w", c.Queue, err)
		}
		if c.Exchange != "" {
			if err := ch.QueueBind(c.Queue, c.Key(), c.Exchange, false, nil); err != nil {
				return fmt.Errorf("bind queue %q to %q with %q: %w", c.Queue, c.Exchange, c.Key(), err)
			}
		}
		return nil
	})
}

// userExchange reports whether an exchange may be declared: not the
// default exchange and not one of the broker's reserved amq.* exchanges.
func userExchange(name string) bool {
	return name != "" && !(len(name) >= 4 && name[:4] == "amq.")
}

// withChannel runs fn on a fresh channel of conn and closes it.
func withChannel(conn *amqp.Connection, fn func(*amqp.Channel) error) error {
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	err = fn(ch)
	if cerr := ch.Close(); err == nil && cerr != nil && !errors.Is(cerr, amqp.ErrClosed) {
		err = cerr
	}
	return err
}

// supervise watches the current session and redials when it dies, until
// ctx is done.
func (d *Driver) supervise(ctx context.Context, s *session) {
	blocked := s.blocked
	for {
		var cause error
		select {
		case <-ctx.Done():
			return
		case e := <-s.connClosed:
			cause = closeCause("connection", e)
		case e := <-s.pubConnClosed:
			cause = closeCause("publish connection", e)
		case b, ok := <-blocked:
			if !ok {
				blocked = nil // closed with the connection
				continue
			}
			if b.Active {
				d.log.Warn("broker blocks publishing; publishes wait for confirm_timeout", "reason", b.Reason)
			} else {
				d.log.Info("broker unblocked publishing")
			}
			continue
		case e := <-s.chClosed:
			cause = closeCause("channel", e)
		case tag := <-s.cancelled:
			cause = fmt.Errorf("broker cancelled consumer %q (queue deleted?)", tag)
		case <-s.done:
			cause = errors.New("session closed")
		}
		d.lost(s, cause)
		if s = d.redial(ctx, s.gen+1, cause); s == nil {
			return
		}
		blocked = s.blocked
	}
}

// closeCause describes why a connection or channel closed.
func closeCause(what string, e *amqp.Error) error {
	if e == nil {
		return fmt.Errorf("%s closed", what)
	}
	return fmt.Errorf("%s closed: %w", what, e)
}

// lost marks s dead and the driver disconnected.
func (d *Driver) lost(s *session, cause error) {
	s.kill()
	d.mu.Lock()
	if d.sess == s {
		d.sess = nil
		d.ready = make(chan struct{})
	}
	d.lastErr = cause
	d.mu.Unlock()
	d.log.Warn("amqp connection lost, redialling", "err", cause)
}

// redial connects again with backoff until it succeeds or ctx is done; it
// installs and returns the new session (nil when ctx is done). A series of
// failures longer than redial_timeout is logged at error level, once, and
// the driver keeps trying.
func (d *Driver) redial(ctx context.Context, gen uint64, cause error) *session {
	start := time.Now()
	wait := redialMin
	reported := false
	for {
		s, err := d.connect(ctx, gen)
		if err == nil {
			if err := d.install(s); err != nil {
				s.kill()
				d.setErr(err)
			} else {
				d.log.Info("amqp connection restored", "after", time.Since(start).Round(time.Millisecond))
				return s
			}
		} else {
			d.setErr(err)
		}
		if ctx.Err() != nil {
			return nil
		}
		if !reported && time.Since(start) > d.cfg.RedialTimeout {
			reported = true
			d.log.Error("amqp broker unreachable beyond redial_timeout; still trying",
				"redial_timeout", d.cfg.RedialTimeout, "cause", cause, "err", d.Check())
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		wait = min(wait*2, redialMax, max(d.cfg.RedialTimeout, redialMin))
	}
}

// install makes s the current session and starts consuming on it unless
// the driver is paused or closing.
func (d *Driver) install(s *session) error {
	d.consumeMu.Lock()
	defer d.consumeMu.Unlock()
	if !d.paused && !d.stopping {
		if err := d.startConsuming(s); err != nil {
			return err
		}
	}
	d.mu.Lock()
	d.sess = s
	d.lastErr = nil
	close(d.ready)
	d.mu.Unlock()
	return nil
}

// setErr records why the driver is disconnected.
func (d *Driver) setErr(err error) {
	d.mu.Lock()
	d.lastErr = err
	d.mu.Unlock()
}

// current returns the live session, or nil while disconnected.
func (d *Driver) current() *session {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sess
}

// waitSession returns the live session, waiting for a reconnect while
// disconnected, until ctx is done or the driver is closed.
func (d *Driver) waitSession(ctx context.Context) (*session, error) {
	for {
		d.mu.Lock()
		s, ready := d.sess, d.ready
		d.mu.Unlock()
		if s != nil && !s.dead() {
			return s, nil
		}
		var poll <-chan time.Time
		if s != nil {
			// Dead but not replaced by supervise yet.
			ready, poll = nil, time.After(10*time.Millisecond)
		}
		select {
		case <-ready:
		case <-poll:
		case <-ctx.Done():
			return nil, fmt.Errorf("amqpjobs: waiting for the broker connection: %w", errors.Join(context.Cause(ctx), d.Check()))
		case <-d.finished:
			return nil, consumer.ErrClosed
		}
	}
}
