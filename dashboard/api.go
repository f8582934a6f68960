package dashboard

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/pipevisor/pipevisor/consumer"
	"github.com/pipevisor/pipevisor/pipeline"
)

//go:embed assets
var assets embed.FS

// routes registers every page and endpoint.
func (s *Server) routes() {
	static, _ := fs.Sub(assets, "assets")
	files := http.FileServerFS(static)
	s.mux.Handle("GET /assets/", http.StripPrefix("/assets/", files))
	s.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, static, "index.html")
	})
	s.mux.HandleFunc("GET /api/session", s.session)
	s.mux.HandleFunc("GET /api/overview", s.overview)
	s.mux.HandleFunc("GET /api/history", s.history)
	s.mux.HandleFunc("GET /api/workers", s.workers)
	s.mux.HandleFunc("GET /api/failed", s.failed)
	s.mux.HandleFunc("GET /api/failed/{pipeline}/{id}", s.failedJob)
	s.mux.HandleFunc("/api/failed/{pipeline}/{action}", s.failedAction)
	s.mux.HandleFunc("GET /api/config", s.config)
	s.mux.HandleFunc("/api/pipelines/{name}/{action}", s.control)
	s.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, http.StatusNotFound, errors.New("no such endpoint"))
	})
}

// reply writes v as JSON with every secret scrubbed.
func (s *Server) reply(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"dashboard: encoding the answer failed"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(scrub(b, s.secrets))
	w.Write([]byte("\n"))
}

// errorReply is the body of every error answer.
type errorReply struct {
	Error string `json:"error"`
}

func (s *Server) fail(w http.ResponseWriter, code int, err error) {
	s.reply(w, code, errorReply{Error: err.Error()})
}

func (s *Server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), requestTimeout)
}

// sessionReply tells the pages the CSRF token for their POSTs and how
// often to poll.
type sessionReply struct {
	CSRF   string `json:"csrf"`
	PollMs int64  `json:"poll_ms"`
}

func (s *Server) session(w http.ResponseWriter, r *http.Request) {
	s.reply(w, http.StatusOK, sessionReply{CSRF: s.csrf, PollMs: PollInterval.Milliseconds()})
}

// PipelineRow is one pipeline on the overview. The counts are those of
// `jobs stat --json` (ready, active as Running, delayed, dead: -1 when
// the driver cannot tell); the rates and percentiles come from History.
type PipelineRow struct {
	Name     string `json:"name"`
	Driver   string `json:"driver"`
	Queue    string `json:"queue"`
	Priority int64  `json:"priority"`
	// State is "consuming", "paused" (paused or not started: resume
	// starts it) or "down" (Error says why).
	State    string `json:"state"`
	Error    string `json:"error,omitempty"`
	Ready    int64  `json:"ready"`
	Running  int64  `json:"running"`
	Delayed  int64  `json:"delayed"`
	Reserved int64  `json:"reserved"`
	Acked    uint64 `json:"acked"`
	Retried  uint64 `json:"retried"`
	Requeued uint64 `json:"requeued"`
	Dead     uint64 `json:"dead"`
	Summary
}

// OverviewReply is GET /api/overview.
type OverviewReply struct {
	Time      time.Time     `json:"time"`
	Pipelines []PipelineRow `json:"pipelines"`
	// Total is the Summary over every pipeline.
	Total   Summary `json:"total"`
	History bool    `json:"history"` // false: rates and percentiles are not kept
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	stats, err := s.cfg.Stats.Stat(ctx)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	out := OverviewReply{Time: time.Now().UTC(), Pipelines: make([]PipelineRow, 0, len(stats)), History: s.cfg.History != nil}
	for _, st := range stats {
		row := PipelineRow{
			Name: st.Pipeline, Driver: st.Driver, Queue: st.Queue, Priority: st.Priority,
			State: state(st), Error: st.Error,
			Ready: st.Ready, Running: st.Active, Delayed: st.Delayed, Reserved: st.Reserved,
			Acked: st.Acked, Retried: st.Retried, Requeued: st.Requeued, Dead: st.Dead,
		}
		if s.cfg.History != nil {
			row.Summary = s.cfg.History.Summary(st.Pipeline)
		}
		out.Pipelines = append(out.Pipelines, row)
	}
	sort.Slice(out.Pipelines, func(i, j int) bool { return out.Pipelines[i].Name < out.Pipelines[j].Name })
	if s.cfg.History != nil {
		out.Total = s.cfg.History.Summary("")
	}
	s.reply(w, http.StatusOK, out)
}

// state names a pipeline's state for the overview.
func state(st consumer.Stat) string {
	switch {
	case st.Consuming:
		return "consuming"
	case strings.HasSuffix(st.Error, pipeline.ErrPaused.Error()), strings.Contains(st.Error, "not started"):
		return "paused"
	default:
		return "down"
	}
}

// HistoryReply is GET /api/history[?pipeline=name].
type HistoryReply struct {
	Pipeline      string  `json:"pipeline,omitempty"`
	BucketSeconds float64 `json:"bucket_seconds"`
	Points        []Point `json:"points"`
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	if s.cfg.History == nil {
		s.fail(w, http.StatusNotFound, errors.New("dashboard: no history is kept"))
		return
	}
	name := r.URL.Query().Get("pipeline")
	s.reply(w, http.StatusOK, HistoryReply{Pipeline: name, BucketSeconds: BucketWidth.Seconds(), Points: s.cfg.History.Points(name)})
}

// WorkerRow is one worker process.
type WorkerRow struct {
	Pid        int       `json:"pid"`
	State      string    `json:"state"`
	Jobs       uint64    `json:"jobs"`
	RSS        uint64    `json:"rss"`
	Created    time.Time `json:"created"`
	CurrentJob string    `json:"current_job,omitempty"`
	// RunningMs is how long CurrentJob has been running.
	RunningMs int64 `json:"running_ms,omitempty"`
}

func (s *Server) workers(w http.ResponseWriter, r *http.Request) {
	rows := []WorkerRow{}
	if s.cfg.Workers != nil {
		now := time.Now()
		for _, wi := range s.cfg.Workers.Workers() {
			row := WorkerRow{Pid: wi.Pid, State: wi.State, Jobs: wi.Jobs, RSS: wi.RSS, Created: wi.Created, CurrentJob: wi.CurrentJob}
			if wi.CurrentJob != "" && !wi.CurrentJobSince.IsZero() {
				row.RunningMs = now.Sub(wi.CurrentJobSince).Milliseconds()
			}
			rows = append(rows, row)
		}
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Pid < rows[j].Pid })
	s.reply(w, http.StatusOK, map[string]any{"workers": rows})
}

func (s *Server) config(w http.ResponseWriter, r *http.Request) {
	y, err := MaskedConfig(s.cfg.Root)
	if err != nil {
		s.fail(w, http.StatusInternalServerError, err)
		return
	}
	s.reply(w, http.StatusOK, map[string]string{"yaml": y})
}

// control is POST /api/pipelines/{name}/pause|resume. It needs the
// session's CSRF token (403 without).
func (s *Server) control(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, http.StatusMethodNotAllowed, errors.New("dashboard: actions are POST requests"))
		return
	}
	if !s.checkCSRF(r) {
		s.fail(w, http.StatusForbidden, errors.New("dashboard: missing or wrong CSRF token (reload the page)"))
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	name := r.PathValue("name")
	var err error
	switch r.PathValue("action") {
	case "pause":
		err = s.cfg.Stats.Pause(ctx, []string{name})
	case "resume":
		err = s.cfg.Stats.Resume(ctx, []string{name})
	default:
		s.fail(w, http.StatusNotFound, errors.New("dashboard: the actions are pause and resume"))
		return
	}
	switch {
	case errors.Is(err, consumer.ErrUnknownPipeline):
		s.fail(w, http.StatusNotFound, err)
	case err != nil:
		s.fail(w, http.StatusConflict, err)
	default:
		s.log.Info("dashboard: pipeline "+r.PathValue("action")+"d", "pipeline", name, "remote", r.RemoteAddr)
		s.reply(w, http.StatusOK, map[string]bool{"ok": true})
	}
}
