package bundles

import (
	"errors"
	"fmt"
	"time"
)

// ErrNotLoaded is returned by Status.Check while no snapshot has been loaded.
var ErrNotLoaded = errors.New("bundles: no policy loaded")

// ErrStale is returned by Status.Check when the source has not confirmed
// its policy for longer than the allowed age.
var ErrStale = errors.New("bundles: policy is stale")

// Status is a point-in-time report of a source, for /v1/status, readiness
// and metrics. It is a value: copying it is safe.
//
// Sources retry (a watched directory re-reads a broken file every retry
// interval; a poller polls a failing server on every backoff), and Status
// reports problems, not attempts: a failure is counted, observed and
// logged once when it is distinct — it follows a success, or differs from
// the failure before it (another error for a failed read or fetch, other
// content for a snapshot the sink refused). An attempt that fails the same
// way again only moves LastAttempt. The first success after a failure
// clears LastError and Errors and logs "policy recovered".
type Status struct {
	// Origin names the source, as in Snapshot.Origin.
	Origin string
	// Revision is the revision of the last snapshot the sink accepted; ""
	// until one is.
	Revision string
	// LoadedAt is when the sink accepted that snapshot.
	LoadedAt time.Time
	// LastAttempt is when the source last read (or polled) its policy,
	// whatever came of it, retries that failed the same way included.
	LastAttempt time.Time
	// LastSuccess is when the source last confirmed that the sink serves
	// what the source holds: a snapshot accepted, an unchanged re-read, or a
	// remote poll answered 304 Not Modified.
	LastSuccess time.Time
	// LastError describes the failure the source is in, with
	// file:line:col for policy errors; "" when the last attempt succeeded.
	// It stays while attempts keep failing the same way.
	LastError string
	// LastErrorAt is when LastError first happened (its repeats do not
	// move it; LastAttempt says the source is still trying).
	LastErrorAt time.Time
	// LastErrorRevision is the revision of the snapshot the sink refused,
	// when LastError is that refusal; "" for a failure before the sink (a
	// read, fetch or verification).
	LastErrorRevision string
	// Errors are the located policy errors behind LastError, when known.
	Errors []Problem
	// Reloads counts snapshots the sink accepted, including a snapshot
	// offered again after a revert so that the sink's own error clears.
	Reloads uint64
	// ReloadErrors counts distinct failures (read, fetch, verify or load),
	// not failed attempts: N retries of the same broken file, or N polls
	// of a server that keeps answering 500, count once. A counter that
	// grew with the retry rate would measure the retry interval, not the
	// number of problems; that the source is still failing is what
	// LastError (and the verdict_policy_last_reload_ok gauge) says.
	ReloadErrors uint64
	// LastReloadDuration is how long the last counted attempt took, read
	// to swap (or to its distinct failure).
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

// Observer is told about reload attempts, for metrics: the server adapts
// it to a Prometheus histogram, so this package needs no metrics
// dependency. It sees the outcomes Status counts — every snapshot the sink
// accepted (Status.Reloads) and every distinct failure
// (Status.ReloadErrors) — and not the attempts that failed the same way
// again. Implementations must be safe for concurrent use and must not
// block.
type Observer interface {
	// ObserveReload reports one counted attempt by the source at origin
	// that took d and failed with err (nil on success).
	ObserveReload(origin string, d time.Duration, err error)
}

// ObserverFunc adapts a function to an Observer.
type ObserverFunc func(origin string, d time.Duration, err error)

// ObserveReload calls f(origin, d, err).
func (f ObserverFunc) ObserveReload(origin string, d time.Duration, err error) { f(origin, d, err) }
