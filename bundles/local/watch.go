package local

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Sentinel errors of package local.
var (
	// ErrOptions is wrapped by constructor errors about invalid options.
	ErrOptions = errors.New("local: invalid options")
	// ErrWatch is wrapped when Run cannot set up file watching at all.
	ErrWatch = errors.New("local: cannot watch")
)

const (
	defaultDebounce = 40 * time.Millisecond
	defaultRetry    = time.Second
	maxWaitFactor   = 20 // a burst of events delays a reload by at most this many debounces
)

// loop is the event loop shared by Dir and File. It runs on the caller's
// goroutine. relevant filters events; reload re-reads and delivers, and
// returns true when it should be retried later (a read failed); retryNow
// says the initial read already failed.
type loop struct {
	debounce time.Duration
	retry    time.Duration
	log      *slog.Logger
}

func (l loop) run(ctx context.Context, w *fsnotify.Watcher, relevant func(fsnotify.Event) bool, reload func() bool, retryNow bool) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time                             // first event of the pending burst; zero if none
	arm := func(d time.Duration) { timer.Reset(d) } // Go ≥ 1.23: Reset discards a stale fire
	retrying := retryNow
	if retryNow {
		arm(l.retry)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
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
			wait := l.debounce
			if limit := first.Add(l.debounce * maxWaitFactor); now.Add(wait).After(limit) {
				wait = max(limit.Sub(now), 0)
			}
			retrying = false
			arm(wait)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			l.log.Warn("policy watch error", "error", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				if first.IsZero() {
					first = time.Now()
				}
				arm(l.debounce)
			}
		case <-timer.C:
			first = time.Time{}
			if reload() {
				if !retrying {
					l.log.Debug("policy reload will be retried", "after", l.retry)
				}
				retrying = true
				arm(l.retry)
			} else {
				retrying = false
			}
		}
	}
}

// k8sName reports whether base is one of the hidden names the kubelet's
// atomic writer swaps (..data, ..data_tmp, ..2024_01_01_00_00_00.123).
func k8sName(base string) bool { return strings.HasPrefix(base, "..") }
