package filewatch

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// maxWaitFactor bounds how long a burst of events delays a reload: at most
// this many debounces after its first event.
const maxWaitFactor = 20

// Loop is the event loop of a watch: it waits until events have been
// quiet for Debounce (a burst, such as an editor's save or a ConfigMap
// swap, is one reload), reloads, and retries a failed reload every Retry
// without a new event. It is a value; the zero durations must be filled
// in by its user.
type Loop struct {
	Debounce time.Duration
	Retry    time.Duration
	// Recheck, when positive, reloads that often even without an event, so
	// that a change a watch misses (a network filesystem, a directory made
	// again) is still seen.
	Recheck time.Duration
	// What names what is watched in log lines ("policy", "key file").
	What string
	Log  *slog.Logger
}

// Run runs the loop on the caller's goroutine until ctx is done or w is
// closed, and returns nil then; with w nil it only rechecks. relevant
// filters events (Chmod is never
// relevant); reload reloads and returns true when it should be retried
// later (a read failed); retryNow says the first reload, done before Run,
// already failed.
func (l Loop) Run(ctx context.Context, w *fsnotify.Watcher, relevant func(fsnotify.Event) bool, reload func() bool, retryNow bool) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var recheck <-chan time.Time
	if l.Recheck > 0 {
		t := time.NewTicker(l.Recheck)
		defer t.Stop()
		recheck = t.C
	}
	var first time.Time                             // first event of the pending burst; zero if none
	arm := func(d time.Duration) { timer.Reset(d) } // Go ≥ 1.23: Reset discards a stale fire
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	retrying := retryNow
	if retryNow {
		arm(l.Retry)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod || !relevant(ev) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			wait := l.Debounce
			if limit := first.Add(l.Debounce * maxWaitFactor); now.Add(wait).After(limit) {
				wait = max(limit.Sub(now), 0)
			}
			retrying = false
			arm(wait)
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			l.Log.Warn(l.What+" watch error", "error", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				if first.IsZero() {
					first = time.Now()
				}
				arm(l.Debounce)
			}
		case <-recheck:
			if first.IsZero() && !retrying {
				arm(0)
			}
		case <-timer.C:
			first = time.Time{}
			if reload() {
				if !retrying {
					l.Log.Debug(l.What+" reload will be retried", "after", l.Retry)
				}
				retrying = true
				arm(l.Retry)
			} else {
				retrying = false
			}
		}
	}
}

// KubeName reports whether base is one of the hidden names the kubelet's
// atomic writer swaps when it updates a ConfigMap or Secret volume
// (..data, ..data_tmp, ..2024_01_01_00_00_00.123).
func KubeName(base string) bool { return strings.HasPrefix(base, "..") }
