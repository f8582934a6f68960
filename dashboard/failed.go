package dashboard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pipevisor/pipevisor/consumer"
)

// Failed lists, shows, retries and removes the pipelines' dead jobs
// (*jobs.Manager); the errors wrap consumer.ErrUnknownPipeline,
// consumer.ErrNoDeadStore and consumer.ErrDeadNotFound as the manager's
// do.
type Failed interface {
	FailedList(ctx context.Context, pipeline string, limit int) ([]consumer.DeadJob, error)
	FailedShow(ctx context.Context, pipeline, id string) (consumer.DeadJob, error)
	FailedRetry(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error)
	FailedRemove(ctx context.Context, pipeline string, sel consumer.DeadSelection) ([]string, error)
}

// previewBytes is how much of a dead job's payload the list shows.
const previewBytes = 200

// DeadListLimit is how many of a pipeline's oldest dead jobs the list
// shows; DeadList.More says there are others.
const DeadListLimit = 100

// maxActionBody bounds the JSON body of a retry or remove.
const maxActionBody = 1 << 20

// DeadRow is one dead job in a list.
type DeadRow struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Reason   string `json:"reason"`
	Attempts int    `json:"attempts"`
	// At is when it died; absent when the broker did not record it.
	At      *time.Time `json:"at,omitempty"`
	Preview string     `json:"preview"`
}

// DeadList is one pipeline's dead jobs; Available is false (Reason says
// why) when they cannot be listed: no dead-letter target, or the
// broker's error.
type DeadList struct {
	Pipeline  string `json:"pipeline"`
	Driver    string `json:"driver"`
	Available bool   `json:"available"`
	Reason    string `json:"reason,omitempty"`
	// Jobs are the oldest DeadListLimit dead jobs, oldest first; More is
	// set when the pipeline holds others.
	Jobs []DeadRow `json:"jobs"`
	More bool      `json:"more"`
}

// FailedReply is GET /api/failed: the dead jobs of every pipeline, by
// pipeline name. Available is false (Reason says why) when the
// dashboard has no Failed.
type FailedReply struct {
	Available bool       `json:"available"`
	Reason    string     `json:"reason,omitempty"`
	Pipelines []DeadList `json:"pipelines"`
}

// DeadJob is GET /api/failed/{pipeline}/{id}: one dead job in full.
// Payload is the payload as text when it is valid UTF-8; otherwise
// PayloadBase64 holds it.
type DeadJob struct {
	DeadRow
	Pipeline      string              `json:"pipeline"`
	Priority      int64               `json:"priority"`
	Key           string              `json:"key,omitempty"`
	Headers       map[string][]string `json:"headers"`
	Payload       string              `json:"payload"`
	PayloadBase64 []byte              `json:"payload_base64,omitempty"`
}

// FailedAction is the JSON body of POST /api/failed/{pipeline}/retry
// and /remove: the ids of the jobs, or All for every dead job of the
// pipeline (exactly one of them).
type FailedAction struct {
	IDs []string `json:"ids"`
	All bool     `json:"all"`
}

// FailedActionReply answers a retry or remove: the ids it retried or
// removed, and Error when some could not be (the others were done).
type FailedActionReply struct {
	IDs   []string `json:"ids"`
	Error string   `json:"error,omitempty"`
}

// notAvailable is the reason of a dashboard without Failed.
const notAvailable = "failed jobs are not available in this build"

func (s *Server) failed(w http.ResponseWriter, r *http.Request) {
	out := FailedReply{Pipelines: []DeadList{}}
	if s.cfg.Failed == nil {
		out.Reason = notAvailable
		s.reply(w, http.StatusOK, out)
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	stats, err := s.cfg.Stats.Stat(ctx)
	if err != nil {
		s.fail(w, http.StatusServiceUnavailable, err)
		return
	}
	out.Available = true
	sort.Slice(stats, func(i, j int) bool { return stats[i].Pipeline < stats[j].Pipeline })
	for _, st := range stats {
		l := DeadList{Pipeline: st.Pipeline, Driver: st.Driver, Jobs: []DeadRow{}}
		dead, err := s.cfg.Failed.FailedList(ctx, st.Pipeline, DeadListLimit+1)
		switch {
		case errors.Is(err, consumer.ErrUnknownPipeline):
			continue // destroyed since Stat
		case errors.Is(err, consumer.ErrNoDeadStore):
			l.Reason = "no failed jobs are kept: the pipeline has no dead-letter target"
		case err != nil:
			l.Reason = err.Error()
		default:
			l.Available = true
		}
		if len(dead) > DeadListLimit {
			dead, l.More = dead[:DeadListLimit], true
		}
		for _, d := range dead {
			l.Jobs = append(l.Jobs, deadRow(d))
		}
		out.Pipelines = append(out.Pipelines, l)
	}
	s.reply(w, http.StatusOK, out)
}

func deadRow(d consumer.DeadJob) DeadRow {
	p := d.Job.Payload
	if len(p) > previewBytes {
		p = p[:previewBytes]
		for len(p) > 0 && !utf8.Valid(p) {
			p = p[:len(p)-1]
		}
	}
	row := DeadRow{ID: d.Job.ID, Name: d.Job.Name, Reason: d.Reason, Attempts: d.Attempts,
		Preview: strings.ToValidUTF8(string(p), "\uFFFD")}
	if !d.At.IsZero() {
		at := d.At.UTC()
		row.At = &at
	}
	return row
}

// failedStatus is the HTTP status of an error of the Failed methods.
func failedStatus(err error) int {
	switch {
	case errors.Is(err, consumer.ErrUnknownPipeline), errors.Is(err, consumer.ErrDeadNotFound), errors.Is(err, consumer.ErrNoDeadStore):
		return http.StatusNotFound
	default:
		return http.StatusServiceUnavailable
	}
}

func (s *Server) failedJob(w http.ResponseWriter, r *http.Request) {
	if s.cfg.Failed == nil {
		s.fail(w, http.StatusNotFound, errors.New(notAvailable))
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	name := r.PathValue("pipeline")
	d, err := s.cfg.Failed.FailedShow(ctx, name, r.PathValue("id"))
	if err != nil {
		s.fail(w, failedStatus(err), err)
		return
	}
	out := DeadJob{DeadRow: deadRow(d), Pipeline: name, Priority: d.Job.Priority, Key: d.Job.Key, Headers: d.Job.Headers}
	if utf8.Valid(d.Job.Payload) {
		out.Payload = string(d.Job.Payload)
	} else {
		out.PayloadBase64 = d.Job.Payload
	}
	s.reply(w, http.StatusOK, out)
}

// failedAction is POST /api/failed/{pipeline}/retry|remove with a
// FailedAction body. It needs the session's CSRF token (403 without).
// A retry publishes each job to the pipeline again as attempt 1 and
// drops it from the dead store once the publish is confirmed.
func (s *Server) failedAction(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.fail(w, http.StatusMethodNotAllowed, errors.New("dashboard: actions are POST requests"))
		return
	}
	if !s.checkCSRF(r) {
		s.fail(w, http.StatusForbidden, errors.New("dashboard: missing or wrong CSRF token (reload the page)"))
		return
	}
	if s.cfg.Failed == nil {
		s.fail(w, http.StatusNotFound, errors.New(notAvailable))
		return
	}
	action := r.PathValue("action")
	op, done := s.cfg.Failed.FailedRetry, "retried"
	switch action {
	case "retry":
	case "remove":
		op, done = s.cfg.Failed.FailedRemove, "removed"
	default:
		s.fail(w, http.StatusNotFound, errors.New("dashboard: the actions on failed jobs are retry and remove"))
		return
	}
	var body FailedAction
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		s.fail(w, http.StatusBadRequest, fmt.Errorf("dashboard: the body is {\"ids\":[...]} or {\"all\":true}: %w", err))
		return
	}
	if body.All == (len(body.IDs) > 0) {
		s.fail(w, http.StatusBadRequest, errors.New(`dashboard: the body is {"ids":[...]} or {"all":true}`))
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	name := r.PathValue("pipeline")
	ids, err := op(ctx, name, consumer.DeadSelection{IDs: body.IDs, All: body.All})
	out := FailedActionReply{IDs: ids}
	if out.IDs == nil {
		out.IDs = []string{}
	}
	if len(ids) > 0 {
		s.log.Info("dashboard: failed jobs "+done, "pipeline", name, "jobs", len(ids), "remote", r.RemoteAddr)
	}
	if err != nil {
		out.Error = err.Error()
		s.reply(w, failedStatus(err), out)
		return
	}
	s.reply(w, http.StatusOK, out)
}
