// Package record keeps a policy source's bundles.Status, delivers its
// snapshots to the sink, and logs what changed. The sources of package
// local (Dir, File) and remote (Poller) each hold one Recorder, so that
// they count, log and recover alike.
//
// # Transitions, not attempts
//
// A source retries: a watched directory re-reads a broken file every
// RetryInterval, a poller polls a failing server every backoff. The
// Recorder reports what changed, not every attempt:
//
//   - A failure is counted (Status.ReloadErrors), observed and logged once
//     when it is distinct: when it follows a success, or differs from the
//     failure recorded last. Failures before the sink (read, fetch,
//     verify) are compared by their error text, since there is no content
//     to compare; snapshots the sink refused are compared by content. An
//     attempt that fails the same way again only moves
//     Status.LastAttempt.
//   - A snapshot whose content the sink refused last time is not offered
//     again (the sink would refuse it again).
//   - Content identical to what the sink serves is not offered again
//     either, unless the sink's last answer was an error: then it is
//     offered once more (a broken save undone), so that the sink's own
//     status clears too.
//   - The first success after a failure clears Status.LastError and
//     Status.Errors, and logs "policy recovered" with the revision: at Info
//     when the sink was not given the snapshot again (a save that did not
//     parse, undone: the sink never saw it), at Debug when it was (the
//     sink's own line, "policy loaded", says it).
//   - A snapshot of new content that the sink accepts logs
//     "policy reloaded" at Debug level: the sink says what it made of it
//     (the engine logs "policy loaded" with its evaluator and decision
//     cache), so that a change is one line at Info. A refused one is the
//     Recorder's to log ("policy reload failed"): the engine returns its
//     error without logging it. A source logs its own failures before the
//     sink (a policy that does not parse, a bundle that does not verify)
//     with the same message, so that one message means a change that did
//     not take.
package record

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
)

// Options configures a Recorder. Every zero value means the documented
// default.
type Options struct {
	// Origin names the source in Status and logs.
	Origin string
	// Observer is told about every counted outcome (see
	// bundles.Observer); nil means none.
	Observer bundles.Observer
	// Logger receives the transitions; nil discards them.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Recorder keeps one source's Status and delivers its snapshots to a sink,
// as the package doc describes. Status and Initialized are safe for
// concurrent use at any time; Deliver, Unchanged and Failed must be
// called by one goroutine at a time (the source's Run). The zero value is
// not usable; build one with New.
type Recorder struct {
	origin   string
	observer bundles.Observer
	log      *slog.Logger
	now      func() time.Time

	mu      sync.Mutex
	st      bundles.Status
	good    *bundles.Snapshot // the snapshot the sink serves; nil before one
	goodKey string            // its content key
	offered string            // content key of the snapshot the sink was last given
	refused error             // the sink's error for it; nil when it accepted
	failing string            // identity of the failure recorded last; "" after a success

	initOnce sync.Once
	init     chan struct{}
}

// New returns a Recorder with an empty Status for opts.Origin.
func New(opts Options) *Recorder {
	r := &Recorder{origin: opts.Origin, observer: opts.Observer, log: opts.Logger, now: opts.Now,
		st: bundles.Status{Origin: opts.Origin}, init: make(chan struct{})}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r
}

// Status returns a copy of the current status.
func (r *Recorder) Status() bundles.Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.st
	st.Errors = append([]bundles.Problem(nil), st.Errors...)
	return st
}

// Initialized returns a channel closed by MarkInitialized.
func (r *Recorder) Initialized() <-chan struct{} { return r.init }

// MarkInitialized closes the Initialized channel, once the source's first
// attempt has finished, whether it succeeded or not; later calls do
// nothing.
func (r *Recorder) MarkInitialized() { r.initOnce.Do(func() { close(r.init) }) }

// key returns the de-duplication key of a snapshot: its content hash plus
// revision and roots, so that a changed manifest alone is also a change.
func key(s *bundles.Snapshot) string {
	return bundles.ContentHash(s) + "|" + s.Revision + "|" + strings.Join(s.Roots, ",")
}

// Deliver offers s, read starting at start, to sink, unless the sink
// already serves that content or refused it last time (see the package
// doc), and returns the sink's error, or the error it gave last time for
// the same content. The sink is called without the Recorder's lock held;
// an error while ctx is done (shutting down) is returned but not recorded.
func (r *Recorder) Deliver(ctx context.Context, sink bundles.Sink, s *bundles.Snapshot, start time.Time) error {
	k := key(s)
	r.mu.Lock()
	refused := r.refused
	switch {
	case k == r.offered && refused != nil:
		r.mu.Unlock()
		r.refusal(s, k, refused, start, r.now())
		return refused
	case k == r.goodKey && refused == nil:
		r.mu.Unlock()
		r.confirmed(start)
		return nil
	}
	r.mu.Unlock()
	return r.load(ctx, sink, s, k, start)
}

// Unchanged records an attempt that began at start and found the source's
// content unchanged without reading it (a 304 Not Modified). When the
// sink's last answer was an error, the snapshot the sink served before is
// offered to it again, as for content that went back to it, and the sink's
// error is returned; otherwise Unchanged returns nil.
func (r *Recorder) Unchanged(ctx context.Context, sink bundles.Sink, start time.Time) error {
	r.mu.Lock()
	good, k, refused := r.good, r.goodKey, r.refused
	r.mu.Unlock()
	if refused != nil && good != nil {
		return r.load(ctx, sink, good, k, start)
	}
	r.confirmed(start)
	return nil
}

// Failed records an attempt that began at start and failed before a
// snapshot could be offered (a read, fetch or verification error). A
// distinct failure is logged at level with msg and the origin and error;
// a repeat only moves LastAttempt. It reports whether the failure was
// distinct.
func (r *Recorder) Failed(start time.Time, level slog.Level, msg string, err error) bool {
	if !r.failed(start, r.now(), err, "error "+err.Error(), "") {
		return false
	}
	r.log.Log(context.Background(), level, msg,
		slog.String("origin", r.origin), slog.String("error", bundles.FormatError(err)))
	return true
}

// load offers s to sink and records the answer.
func (r *Recorder) load(ctx context.Context, sink bundles.Sink, s *bundles.Snapshot, k string, start time.Time) error {
	err := sink.Load(ctx, s)
	if err != nil && ctx.Err() != nil {
		return err // shutting down: not the policy's fault
	}
	end := r.now()
	r.mu.Lock()
	r.offered, r.refused = k, err
	if err != nil {
		r.mu.Unlock()
		r.refusal(s, k, err, start, end)
		return err
	}
	changed := k != r.goodKey
	recovered := r.failing != ""
	r.good, r.goodKey, r.failing = s, k, ""
	r.st.Revision, r.st.LoadedAt = s.Revision, end
	r.st.LastAttempt, r.st.LastSuccess = start, end
	r.st.LastError, r.st.LastErrorAt, r.st.LastErrorRevision, r.st.Errors = "", time.Time{}, "", nil
	r.st.Reloads++
	r.st.LastReloadDuration = end.Sub(start)
	r.mu.Unlock()
	r.observe(end.Sub(start), nil)
	if changed {
		r.log.Debug("policy reloaded", "origin", r.origin, "revision", s.Revision,
			"modules", len(s.Modules), "took", end.Sub(start))
	}
	if recovered {
		// At Debug: the sink's own line ("policy loaded") says it.
		r.log.Debug("policy recovered", "origin", r.origin, "revision", s.Revision)
	}
	return nil
}

// refusal records that the sink refused s (now, or last time).
func (r *Recorder) refusal(s *bundles.Snapshot, k string, err error, start, end time.Time) {
	if r.failed(start, end, err, "refused "+k, s.Revision) {
		r.log.Error("policy reload failed", "origin", r.origin, "revision", s.Revision,
			"error", bundles.FormatError(err))
	}
}

// confirmed records an attempt that found the sink serving what the source
// holds.
func (r *Recorder) confirmed(start time.Time) {
	end := r.now()
	r.mu.Lock()
	recovered := r.failing != ""
	r.failing = ""
	r.st.LastAttempt, r.st.LastSuccess = start, end
	r.st.LastError, r.st.LastErrorAt, r.st.LastErrorRevision, r.st.Errors = "", time.Time{}, "", nil
	revision := r.st.Revision
	r.mu.Unlock()
	if recovered {
		r.log.Info("policy recovered", "origin", r.origin, "revision", revision)
	}
}

// failed records a failure identified by id (of the snapshot of revision,
// when the sink refused one), and reports whether it was distinct (then
// counted and observed) rather than a repeat.
func (r *Recorder) failed(start, end time.Time, err error, id, revision string) bool {
	r.mu.Lock()
	r.st.LastAttempt = start
	if id == r.failing {
		r.mu.Unlock()
		return false
	}
	r.failing = id
	r.st.LastError, r.st.LastErrorAt, r.st.LastErrorRevision = bundles.FormatError(err), end, revision
	r.st.Errors = bundles.Problems(err)
	r.st.ReloadErrors++
	r.st.LastReloadDuration = end.Sub(start)
	r.mu.Unlock()
	r.observe(end.Sub(start), err)
	return true
}

func (r *Recorder) observe(d time.Duration, err error) {
	if r.observer != nil {
		r.observer.ObserveReload(r.origin, d, err)
	}
}
