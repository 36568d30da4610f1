package bundles

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// ErrNotLoaded is returned by Status.Check while no snapshot has been loaded.
var ErrNotLoaded = errors.New("bundles: no policy loaded")

// ErrStale is returned by Status.Check when the source has not confirmed
// its policy for longer than the allowed age.
var ErrStale = errors.New("bundles: policy is stale")

// Status is a point-in-time report of a source, for /v1/status, readiness
// and metrics. It is a value: copying it is safe.
type Status struct {
	// Origin names the source, as in Snapshot.Origin.
	Origin string
	// Revision is the revision of the last snapshot the sink accepted; ""
	// until one is.
	Revision string
	// LoadedAt is when the sink accepted that snapshot.
	LoadedAt time.Time
	// LastAttempt is when the source last read (or polled) its policy.
	LastAttempt time.Time
	// LastSuccess is when the source last confirmed that the sink serves
	// what the source holds: a snapshot accepted, an unchanged re-read, or a
	// remote poll answered 304 Not Modified.
	LastSuccess time.Time
	// LastError describes the last attempt's failure, with file:line:col for
	// policy errors; "" when the last attempt succeeded.
	LastError string
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time
	// Errors are the located policy errors behind LastError, when known.
	Errors []Problem
	// Reloads counts snapshots the sink accepted.
	Reloads uint64
	// ReloadErrors counts failed attempts (read, fetch, verify or load).
	ReloadErrors uint64
	// LastReloadDuration is how long the last attempt took, read to swap.
	LastReloadDuration time.Duration
}

// Check reports whether the status is fit to serve: ErrNotLoaded before
// the first accepted snapshot, and, when maxAge > 0, ErrStale if the last
// success is older than maxAge at now. Operators who prefer failing closed
// to serving stale policy tie readiness to it.
func (s Status) Check(maxAge time.Duration, now time.Time) error {
	if s.Revision == "" {
		return ErrNotLoaded
	}
	if maxAge > 0 && (s.LastSuccess.IsZero() || now.Sub(s.LastSuccess) > maxAge) {
		return fmt.Errorf("%w: last confirmed %s, allowed age %s", ErrStale,
			formatTime(s.LastSuccess), maxAge)
	}
	return nil
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format(time.RFC3339)
}

// Observer is told about every reload attempt, for metrics: the server
// adapts it to Prometheus counters and a histogram, so this package needs
// no metrics dependency. Implementations must be safe for concurrent use
// and must not block.
type Observer interface {
	// ObserveReload reports one attempt by the source at origin that took d
	// and failed with err (nil on success).
	ObserveReload(origin string, d time.Duration, err error)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(origin string, d time.Duration, err error)

// ObserveReload calls f(origin, d, err).
func (f ObserverFunc) ObserveReload(origin string, d time.Duration, err error) { f(origin, d, err) }

// Recorder keeps a source's Status and delivers snapshots to a sink on its
// behalf, de-duplicating unchanged content. Sources embed one; it is safe
// for concurrent use (Status may be read while the source records).
type Recorder struct {
	origin   string
	observer Observer
	now      func() time.Time

	mu       sync.Mutex
	st       Status
	goodKey  string // content key of the snapshot the sink holds
	lastKey  string // content key of the last snapshot offered to the sink
	lastErr  error  // the sink's answer to lastKey
	initOnce sync.Once
	init     chan struct{}
}

// NewRecorder returns a Recorder for the source at origin. A nil observer
// observes nothing; a nil now means time.Now.
func NewRecorder(origin string, observer Observer, now func() time.Time) *Recorder {
	if now == nil {
		now = time.Now
	}
	return &Recorder{origin: origin, observer: observer, now: now,
		st: Status{Origin: origin}, init: make(chan struct{})}
}

// Status returns a copy of the current status.
func (r *Recorder) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Errors = append([]Problem(nil), st.Errors...)
	return st
}

// Initialized returns a channel closed once the source's first attempt has
// finished, whether it succeeded or not (Status says which).
func (r *Recorder) Initialized() <-chan struct{} { return r.init }

// MarkInitialized closes the Initialized channel; later calls do nothing.
func (r *Recorder) MarkInitialized() { r.initOnce.Do(func() { close(r.init) }) }

// Key returns the de-duplication key of a snapshot: its content hash plus
// revision and roots, so that a changed manifest alone is also a change.
func Key(s *Snapshot) string {
	return ContentHash(s) + "|" + s.Revision + "|" + strings.Join(s.Roots, ",")
}

// Deliver offers s, read starting at start, to sink, unless the same content
// was already offered (then it records the earlier outcome again without
// calling the sink). It returns whether the sink was called and the sink's
// error. The sink is called without the Recorder's lock held.
func (r *Recorder) Deliver(ctx context.Context, sink Sink, s *Snapshot, start time.Time) (called bool, err error) {
	key := Key(s)
	r.mu.Lock()
	switch key {
	case r.lastKey:
		err = r.lastErr
		if err != nil {
			// Same broken content again: report it, but count it once.
			r.st.LastAttempt = start
			r.st.LastError, r.st.Errors = FormatError(err), Problems(err)
		}
		r.mu.Unlock()
		if err == nil {
			r.Unchanged(start)
		}
		return false, err
	case r.goodKey:
		// Back to what the sink already serves (e.g. a broken save undone).
		r.lastKey, r.lastErr = key, nil
		r.mu.Unlock()
		r.Unchanged(start)
		return false, nil
	}
	r.mu.Unlock()

	err = sink.Load(ctx, s)
	if err != nil && ctx.Err() != nil {
		return true, err // shutting down: not the policy's fault
	}
	end := r.now()
	r.mu.Lock()
	r.lastKey, r.lastErr = key, err
	if err == nil {
		r.goodKey = key
	}
	r.mu.Unlock()
	if err != nil {
		r.Failed(err, start)
		return true, err
	}
	r.mu.Lock()
	r.st.Revision, r.st.LoadedAt = s.Revision, end
	r.st.LastAttempt, r.st.LastSuccess = start, end
	r.st.LastError, r.st.LastErrorAt, r.st.Errors = "", time.Time{}, nil
	r.st.Reloads++
	r.st.LastReloadDuration = end.Sub(start)
	r.mu.Unlock()
	r.observe(end.Sub(start), nil)
	return true, nil
}

// Unchanged records an attempt at start that found nothing new (an
// unchanged re-read, or 304 Not Modified) and clears the last error.
func (r *Recorder) Unchanged(start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.LastAttempt, r.st.LastSuccess = start, r.now()
	r.st.LastError, r.st.LastErrorAt, r.st.Errors = "", time.Time{}, nil
}

// Failed records an attempt that began at start and failed with err.
func (r *Recorder) Failed(err error, start time.Time) {
	end := r.now()
	r.mu.Lock()
	r.st.LastAttempt = start
	r.st.LastError, r.st.LastErrorAt = FormatError(err), end
	r.st.Errors = Problems(err)
	r.st.ReloadErrors++
	r.st.LastReloadDuration = end.Sub(start)
	r.mu.Unlock()
	r.observe(end.Sub(start), err)
}

// Forget drops the memory of the last offered content, so that the next
// Deliver of it calls the sink again (used after a read error in between).
func (r *Recorder) Forget() {
	r.mu.Lock()
	r.lastKey, r.lastErr = "", nil
	r.mu.Unlock()
}

func (r *Recorder) observe(d time.Duration, err error) {
	if r.observer != nil {
		r.observer.ObserveReload(r.origin, d, err)
	}
}
