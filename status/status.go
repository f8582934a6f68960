// Package status serves the supervisor's health endpoints over HTTP, on
// RoadRunner's status.address:
//
//   - GET /health answers 200 "ok" while the process runs and its Health
//     check passes (the pool has at least one live worker), else the
//     unavailable status (503 by default) with the reason.
//   - GET /ready answers 200 "ready" while the Ready check passes (every
//     consumed pipeline is connected and consuming), else the unavailable
//     status with every reason, one per line. Unlike RoadRunner (#1724)
//     the body says which pipeline is down and why.
//
// Bodies are text/plain; a request with "Accept: application/json" gets
// {"status":"ok"|"ready"|"unavailable","reasons":[...]} instead. HEAD is
// answered like GET without a body; other methods get 405.
package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"
)

// Defaults.
const (
	// DefaultUnavailableStatus is the HTTP status of a failed check.
	DefaultUnavailableStatus = http.StatusServiceUnavailable
	// ShutdownTimeout bounds the wait for in-flight requests once the
	// server's ctx is done.
	ShutdownTimeout = 5 * time.Second
	// readHeaderTimeout protects the server from slow clients.
	readHeaderTimeout = 10 * time.Second
)

// Check reports nil when healthy, else why not. errors.Join-ed errors are
// reported one reason per line.
type Check func() error

// Config configures a Server.
type Config struct {
	// Health backs /health; nil means always healthy.
	Health Check
	// Ready backs /ready; nil means always ready.
	Ready Check
	// UnavailableStatus is the status of a failed check (default
	// DefaultUnavailableStatus; RoadRunner's status.unavailable_status_code).
	UnavailableStatus int
	// Logger receives server errors; nil discards them.
	Logger *slog.Logger
}

// Server serves /health and /ready. It is safe for concurrent use.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns a server for cfg. Nothing listens until Serve.
func New(cfg Config) *Server {
	if cfg.UnavailableStatus == 0 {
		cfg.UnavailableStatus = DefaultUnavailableStatus
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: log, mux: http.NewServeMux()}
	s.mux.HandleFunc("/health", s.endpoint("ok", cfg.Health))
	s.mux.HandleFunc("/ready", s.endpoint("ready", cfg.Ready))
	return s
}

// Handler returns the HTTP handler of /health and /ready.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on ln until ctx is done, then shuts the server down (in-flight
// requests get ShutdownTimeout) and returns nil. It closes ln. Any other
// error of the HTTP server is returned at once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return ServeHTTP(ctx, ln, s.mux, s.log)
}

// ServeHTTP serves h on ln until ctx is done, then shuts down gracefully
// within ShutdownTimeout and returns nil. It closes ln. It returns only
// after the server's goroutines have stopped. The metrics package uses it
// too.
func ServeHTTP(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	if log != nil {
		srv.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("status: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if err != nil {
		_ = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return fmt.Errorf("status: serving on %s: %w", ln.Addr(), serr)
	}
	return nil
}

// Listen opens a TCP listener on addr (host:port). ctx bounds only the
// listen call.
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("status: listen %s: %w", addr, err)
	}
	return ln, nil
}

type report struct {
	Status  string   `json:"status"`
	Reasons []string `json:"reasons,omitempty"`
}

// endpoint answers with check's verdict.
func (s *Server) endpoint(okWord string, check Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		rep := report{Status: okWord}
		code := http.StatusOK
		if check != nil {
			if err := check(); err != nil {
				code = s.cfg.UnavailableStatus
				rep.Status = "unavailable"
				rep.Reasons = reasons(err)
			}
		}
		w.Header().Set("Cache-Control", "no-store")
		if strings.Contains(r.Header.Get("Accept"), "application/json") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			if r.Method == http.MethodGet {
				_ = json.NewEncoder(w).Encode(rep)
			}
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(code)
		if r.Method != http.MethodGet {
			return
		}
		if code == http.StatusOK {
			fmt.Fprintln(w, okWord)
			return
		}
		for _, line := range rep.Reasons {
			fmt.Fprintln(w, line)
		}
	}
}

// reasons splits err's message into its lines (errors.Join puts one
// error per line), dropping empty ones.
func reasons(err error) []string {
	var out []string
	for _, line := range strings.Split(err.Error(), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		out = append(out, "unavailable")
	}
	return out
}
