// Package dashboard serves the supervisor's web dashboard: an overview of
// the pipelines (state, queue depths, jobs/s, run-time percentiles,
// pause and resume), a chart of the last hour, the workers, the failed
// (dead) jobs of every pipeline with retry and remove, and the
// configuration in effect with every secret masked.
//
// The pages are static files embedded in the binary (assets/); they read
// JSON from /api/... every PollInterval. Everything that changes state is
// a POST carrying the session's CSRF token (X-CSRF-Token, from GET
// /api/session). With auth configured every request needs it; without,
// only requests naming a loopback host are served (no DNS rebinding).
// No answer carries a secret of the configuration: they are masked in
// the configuration page and scrubbed from every other answer.
//
// The dashboard gets what it shows through small interfaces (Stats,
// Workers, Failed) and a History it is handed, which the caller feeds
// as a pipeline.Observer.
package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/pipevisor/pipevisor/config"
	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pool"
)

// PollInterval is how often the pages refresh their numbers.
const PollInterval = 2 * time.Second

// requestTimeout bounds the calls one request makes into the supervisor.
const requestTimeout = 10 * time.Second

// Stats reads and controls the pipelines (*jobs.Manager).
type Stats interface {
	Stat(ctx context.Context) ([]consumer.Stat, error)
	Pause(ctx context.Context, names []string) error
	Resume(ctx context.Context, names []string) error
}

// Workers describes the worker processes (*pool.Pool).
type Workers interface {
	Workers() []pool.WorkerInfo
}

// ErrAuthRequired is returned by New for an address that is not a
// loopback one when no auth is configured.
var ErrAuthRequired = errors.New("dashboard.auth: required when dashboard.address is not a loopback address")

// Config is what a dashboard shows and how it is protected.
type Config struct {
	// Root is the configuration in effect (shown masked); its
	// Dashboard section gives the address and the auth.
	Root *config.Root
	// Stats is required.
	Stats Stats
	// Workers, Failed and History may be nil: their pages say so.
	Workers Workers
	Failed  Failed
	History *History
	Logger  *slog.Logger
}

// Server is a dashboard. Its handler is safe for concurrent use.
type Server struct {
	cfg     Config
	log     *slog.Logger
	auth    *config.DashboardAuth
	csrf    string   // this process's CSRF token
	secrets [][]byte // scrubbed from every answer
	mux     *http.ServeMux
}

// New checks cfg and returns a dashboard. It refuses (ErrAuthRequired)
// a non-loopback dashboard.address without dashboard.auth.
func New(cfg Config) (*Server, error) {
	if cfg.Root == nil || cfg.Stats == nil {
		return nil, errors.New("dashboard: Root and Stats are required")
	}
	d := cfg.Root.Dashboard
	if d.Address != "" && d.Auth == nil && !config.IsLoopbackAddress(d.Address) {
		return nil, fmt.Errorf("%w (got %s)", ErrAuthRequired, d.Address)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tok := make([]byte, 32)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("dashboard: csrf token: %w", err)
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		auth:    d.Auth,
		csrf:    hex.EncodeToString(tok),
		secrets: secrets(cfg.Root),
		mux:     http.NewServeMux(),
	}
	s.routes()
	return s, nil
}

// Handler serves the pages and the API, behind the auth and host checks.
func (s *Server) Handler() http.Handler {
	return s.guard(s.mux)
}

// Listen opens dashboard.address. A listener that is not on a loopback
// address without auth is refused (ErrAuthRequired).
func Listen(ctx context.Context, root *config.Root) (net.Listener, error) {
	d := root.Dashboard
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", d.Address)
	if err != nil {
		return nil, fmt.Errorf("dashboard.address: %w", err)
	}
	if d.Auth == nil {
		if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
			ln.Close()
			return nil, fmt.Errorf("%w (%s listens on %s)", ErrAuthRequired, d.Address, ln.Addr())
		}
	}
	return ln, nil
}
