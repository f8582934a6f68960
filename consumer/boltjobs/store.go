package boltjobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// LockTimeout is how long Open waits for another process to release the
// database file before it fails with ErrLocked.
const LockTimeout = 500 * time.Millisecond

// Bucket names inside a pipeline's bucket.
var (
	bucketJobs    = []byte("jobs")    // seq -> record: queued, delayed or handed out
	bucketRunning = []byte("running") // seq -> empty: running marks of earlier versions, read at open
	bucketMarks   = []byte("marks")   // set id -> markSet: running marks
	bucketDead    = []byte("dead")    // seq -> deadRecord
)

// Files opens the database files of the boltdb pipelines of one
// supervisor. Pipelines naming the same file share one open database and
// one writer; the file is closed when the last of its queues is closed.
// A Files is safe for concurrent use.
type Files struct {
	global *Global
	log    *slog.Logger

	mu    sync.Mutex
	files map[string]*store // by absolute path
}

// NewFiles returns a Files for the boltdb: section g (nil when there is
// none). A nil log discards log output.
func NewFiles(g *Global, log *slog.Logger) *Files {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Files{global: g, log: log, files: make(map[string]*store)}
}

// Open opens the pipeline name in the file of cfg (creating both as
// needed) and returns its queue, with every job the file holds for it
// loaded in its original order (see Queue). Errors name the file: a file
// held by another process wraps ErrLocked (after LockTimeout), a corrupt
// or unreadable one ErrCorrupt or the system error. log may be nil.
func (f *Files) Open(ctx context.Context, name string, cfg Config, log *slog.Logger) (*Queue, error) {
	cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("boltjobs: pipeline %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	path, err := filepath.Abs(cfg.File)
	if err != nil {
		return nil, fmt.Errorf("boltjobs: file %s: %w", cfg.File, err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.files[path]
	if s == nil {
		s, err = openStore(path, cfg.Mode(f.global), f.log)
		if err != nil {
			return nil, err
		}
		s.files = f
		f.files[path] = s
	}
	q, err := s.openQueue(name, cfg, log)
	if err != nil {
		f.closeIfUnusedLocked(s)
		return nil, err
	}
	return q, nil
}

// closeIfUnused closes s once no queue uses it; otherwise it waits for the
// commit of every change enqueued so far.
func (f *Files) closeIfUnused(s *store) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closeIfUnusedLocked(s)
}

// closeIfUnusedLocked is closeIfUnused with f.mu held: no Open of the same
// file runs while it is being closed.
func (f *Files) closeIfUnusedLocked(s *store) error {
	s.mu.Lock()
	unused := s.refs == 0 && !s.closed
	s.mu.Unlock()
	if !unused {
		return s.enqueue().waitUntilDone()
	}
	if f.files[s.path] == s {
		delete(f.files, s.path)
	}
	return s.stopAndClose()
}

// store is one open database file and its group-commit writer: the one
// goroutine that writes to the file. Queues append their changes to ops
// and, when they must know the changes are on disk (Publish), wait for the
// commit that carries them. Each commit is one bbolt write transaction,
// ended by its fsync.
type store struct {
	path  string
	db    *bolt.DB
	log   *slog.Logger
	files *Files // the Files that opened it

	mu     sync.Mutex
	ops    []op
	cur    *commitWait // the commit the ops in s.ops will be in
	queues map[string]*Queue
	refs   int
	closed bool

	wake chan struct{} // capacity 1
	stop chan struct{} // closed to stop the writer
	done chan struct{} // closed when the writer returned
}

// commitWait is one commit's result, published when done closes.
type commitWait struct {
	done  chan struct{}
	err   error
	after []func()      // run by the writer, in order, once the commit succeeded
	marks []func(error) // run by the writer with the commit's result, before after
	// finals are run by the writer with the commit's result, last (see
	// whenDone); sealed, once set, says they have been taken. Both are
	// guarded by store.mu.
	finals []func(error)
	sealed bool
}

type opKind uint8

const (
	opPut        opKind = iota + 1 // jobs[seq] = val
	opDelete                       // delete jobs[seq]
	opDead                         // delete jobs[seq]; dead[seq] = val
	opRemoveDead                   // delete dead[seq]
	opPutMarks                     // marks[seq] = val (seq: a mark set id)
	opDelMarks                     // delete marks[seq]
	opTrimDead                     // delete the oldest dead jobs, seq = how many
)

// op is one change of a pipeline's buckets.
type op struct {
	q    *Queue
	kind opKind
	seq  uint64
	val  []byte
}

// openStore opens (or creates) the database at path and checks it, then
// starts its writer.
func openStore(path string, mode fs.FileMode, log *slog.Logger) (*store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("boltjobs: file %s: %w", path, err)
	}
	db, err := openChecked(path, mode)
	if err != nil {
		return nil, err
	}
	s := &store{
		path:   path,
		db:     db,
		log:    log.With("file", path),
		cur:    &commitWait{done: make(chan struct{})},
		queues: make(map[string]*Queue),
		wake:   make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go s.run()
	return s, nil
}

// openChecked opens path with bbolt and checks the whole file, turning
// every way a damaged file shows (an error, a panic or a memory fault
// inside bbolt) into an error naming the file.
func openChecked(path string, mode fs.FileMode) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if db != nil {
				_ = db.Close()
			}
			db, err = nil, fmt.Errorf("boltjobs: file %s: %w (%v)", path, ErrCorrupt, r)
		}
	}()
	if info, serr := os.Stat(path); serr == nil && info.Mode().IsRegular() && info.Size() > 0 && info.Size() < 2*int64(os.Getpagesize()) {
		return nil, fmt.Errorf("boltjobs: file %s: %w (%d bytes: truncated)", path, ErrCorrupt, info.Size())
	}
	// The freelist is synced with each commit: without it bbolt rebuilds
	// the list at open in a goroutine of its own, where a damaged page
	// is a panic nobody can recover.
	db, err = bolt.Open(path, mode, &bolt.Options{
		Timeout:      LockTimeout,
		FreelistType: bolt.FreelistMapType,
	})
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("boltjobs: file %s: %w", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("boltjobs: file %s: %w (%v)", path, ErrCorrupt, err)
	case err != nil:
		return nil, fmt.Errorf("boltjobs: file %s: %w", path, err)
	}
	if err := checkFile(db, path); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// checkFile verifies that the file holds every page its metadata names
// and that bbolt's consistency check passes.
func checkFile(db *bolt.DB, path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("boltjobs: file %s: %w", path, err)
	}
	return db.View(func(tx *bolt.Tx) error {
		if tx.Size() > info.Size() {
			return fmt.Errorf("boltjobs: file %s: %w (%d bytes, its pages need %d: truncated)", path, ErrCorrupt, info.Size(), tx.Size())
		}
		var errs []error
		for e := range tx.Check() {
			if len(errs) < 3 {
				errs = append(errs, e)
			}
		}
		if len(errs) > 0 {
			return fmt.Errorf("boltjobs: file %s: %w (%w)", path, ErrCorrupt, errors.Join(errs...))
		}
		return nil
	})
}

// enqueue appends ops to the next commit and returns it. Caller holds the
// queue's lock (ops of one queue reach the file in the order enqueued).
func (s *store) enqueue(ops ...op) *commitWait {
	return s.enqueueAfter(nil, ops...)
}

// enqueueAfter is enqueue that also has the writer run after (when not
// nil) once the commit succeeded, before its waiters are told.
func (s *store) enqueueAfter(after func(), ops ...op) *commitWait {
	return s.enqueueWith(after, nil, ops...)
}

// enqueueWith is enqueueAfter that also has the writer call marked (when
// not nil) with the commit's result (nil: on disk) once it is done,
// before after.
func (s *store) enqueueWith(after func(), marked func(error), ops ...op) *commitWait {
	s.mu.Lock()
	s.ops = append(s.ops, ops...)
	w := s.cur
	if after != nil {
		w.after = append(w.after, after)
	}
	if marked != nil {
		w.marks = append(w.marks, marked)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return w
}

// wait blocks until w's commit is done or ctx ends. It returns the
// commit's error once done (preferred when both happened), else
// ctx.Err() with inDoubt set: the commit goes on.
func (w *commitWait) wait(ctx context.Context) (inDoubt bool, err error) {
	select {
	case <-w.done:
		return false, w.err
	case <-ctx.Done():
		select {
		case <-w.done:
			return false, w.err
		default:
			return true, ctx.Err()
		}
	}
}

// run is the writer: it commits whatever ops have accumulated, one write
// transaction (one fsync) at a time, until stop is closed; then it
// commits what is left and returns.
func (s *store) run() {
	defer close(s.done)
	for {
		select {
		case <-s.wake:
			// Let the publishers the last commit released enqueue their
			// next jobs first: they join this commit instead of the next.
			runtime.Gosched()
			s.commit()
		case <-s.stop:
			s.commit()
			return
		}
	}
}

// commit writes the accumulated ops and the running marks of the jobs
// each queue marks ahead (Queue.collectMarks) in one transaction, and
// reports its result to the queues whose marks it carries and to its
// waiters. The marks are collected after the ops are taken: a mark taken
// off before then is in this commit before the mark written again.
func (s *store) commit() {
	s.mu.Lock()
	ops, w := s.ops, s.cur
	s.ops = nil
	s.cur = &commitWait{done: make(chan struct{})}
	queues := make([]*Queue, 0, len(s.queues))
	for _, q := range s.queues {
		queues = append(queues, q)
	}
	s.mu.Unlock()
	for _, q := range queues {
		var marked func(error)
		if ops, marked = q.collectMarks(ops); marked != nil {
			w.marks = append(w.marks, marked)
		}
	}
	if len(ops) > 0 {
		w.err = s.db.Update(func(tx *bolt.Tx) error { return apply(tx, ops) })
		if w.err != nil {
			w.err = fmt.Errorf("boltjobs: file %s: write: %w", s.path, w.err)
			s.log.Error("writing jobs to the database failed", "error", w.err)
		}
	}
	for _, fn := range w.marks {
		fn(w.err)
	}
	if w.err == nil {
		for _, fn := range w.after {
			fn()
		}
	}
	s.mu.Lock()
	w.sealed = true
	finals := w.finals
	w.finals = nil
	s.mu.Unlock()
	for _, fn := range finals {
		fn(w.err)
	}
	close(w.done)
}

// whenDone runs fn with the result of w's commit once it is done (nil:
// on disk): later, on the writer, or at once when it is done already.
// A nil w stands for nothing to write: fn(nil) at once.
func (s *store) whenDone(w *commitWait, fn func(error)) {
	if w == nil {
		fn(nil)
		return
	}
	s.mu.Lock()
	if !w.sealed {
		w.finals = append(w.finals, fn)
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	fn(w.err)
}

// apply carries out ops in order.
func apply(tx *bolt.Tx, ops []op) error {
	var (
		last              *Queue
		jobs, marks, dead *bolt.Bucket
	)
	for _, o := range ops {
		if o.q != last {
			b := tx.Bucket([]byte(o.q.name))
			if b == nil {
				return fmt.Errorf("bucket of pipeline %q missing", o.q.name)
			}
			jobs, marks, dead = b.Bucket(bucketJobs), b.Bucket(bucketMarks), b.Bucket(bucketDead)
			last = o.q
		}
		k := seqKey(o.seq)
		var err error
		switch o.kind {
		case opPut:
			err = jobs.Put(k, o.val)
		case opDelete:
			err = jobs.Delete(k)
		case opPutMarks:
			err = marks.Put(k, o.val)
		case opDelMarks:
			err = marks.Delete(k)
		case opDead:
			err = errors.Join(jobs.Delete(k), dead.Put(k, o.val))
		case opTrimDead:
			c := dead.Cursor()
			for n, k := o.seq, firstKey(c); n > 0 && k != nil && err == nil; n, k = n-1, firstKey(c) {
				err = c.Delete()
			}
		case opRemoveDead:
			err = dead.Delete(k)
		}
		if err != nil {
			return fmt.Errorf("pipeline %q, job %d: %w", o.q.name, o.seq, err)
		}
	}
	return nil
}

// firstKey returns the first key of c's bucket, nil when it is empty.
func firstKey(c *bolt.Cursor) []byte {
	k, _ := c.First()
	return k
}

// detach unregisters q and flushes its changes; the last queue to go
// stops the writer (which commits what is left) and closes the file.
func (s *store) detach(q *Queue) error {
	s.mu.Lock()
	if s.queues[q.name] == q {
		delete(s.queues, q.name)
		s.refs--
	}
	s.mu.Unlock()
	return s.files.closeIfUnused(s)
}

// waitUntilDone waits for the commit without a deadline: the writer
// always finishes it.
func (w *commitWait) waitUntilDone() error {
	<-w.done
	return w.err
}

// stopAndClose stops the writer after its last commit and closes the file.
func (s *store) stopAndClose() error {
	s.mu.Lock()
	w := s.cur
	s.closed = true
	s.mu.Unlock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	err := w.err
	if cerr := s.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("boltjobs: file %s: close: %w", s.path, cerr))
	}
	return err
}
