package local

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/record"
	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// settings are the options Dir and File share, as each constructor read
// them from its own Options type.
type settings struct {
	field    string // the options field that names path, for errors
	path     string // the watched path, made absolute by newSource
	origin   string // "" means scheme+path
	scheme   string
	debounce time.Duration
	retry    time.Duration
	sizes    []int64 // limits that must not be negative
	logger   *slog.Logger
	observer bundles.Observer
	now      func() time.Time
}

// source is what Dir and File share: their settings, the Recorder that
// keeps their Status, and Run's skeleton. It is safe for concurrent use
// as Dir and File document.
type source struct {
	origin   string
	log      *slog.Logger
	now      func() time.Time
	rec      *record.Recorder
	debounce time.Duration
	retry    time.Duration
}

// newSource validates s, fills in the defaults and returns s.path made
// absolute.
func newSource(s settings) (*source, string, error) {
	if s.path == "" {
		return nil, "", fmt.Errorf("%w: %s is required", ErrOptions, s.field)
	}
	s.origin = cmp.Or(s.origin, s.scheme+s.path)
	if s.debounce < 0 || s.retry < 0 {
		return nil, "", fmt.Errorf("%w: negative duration", ErrOptions)
	}
	for _, n := range s.sizes {
		if n < 0 {
			return nil, "", fmt.Errorf("%w: negative size", ErrOptions)
		}
	}
	abs, err := filepath.Abs(s.path)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", ErrOptions, err)
	}
	src := &source{
		origin:   s.origin,
		log:      cmp.Or(s.logger, slog.New(slog.DiscardHandler)),
		now:      s.now,
		debounce: cmp.Or(s.debounce, defaultDebounce),
		retry:    cmp.Or(s.retry, defaultRetry),
	}
	if src.now == nil {
		src.now = time.Now
	}
	src.rec = record.New(record.Options{Origin: s.origin, Observer: s.observer, Logger: src.log, Now: src.now})
	return src, abs, nil
}

// Status returns the source's current status (see bundles.Status for how
// retries are counted).
func (s *source) Status() bundles.Status { return s.rec.Status() }

// Initialized returns a channel closed once Run's first load attempt has
// finished, successfully or not.
func (s *source) Initialized() <-chan struct{} { return s.rec.Initialized() }

// watch says what a source watches and how it reads.
type watch struct {
	// dir is the directory watched first; name is how errors call it.
	dir, name string
	// relevant filters events.
	relevant func(fsnotify.Event) bool
	// read reads the policy set.
	read func() (*bundles.Snapshot, error)
	// sync, when set, runs before every read (Dir adds and drops the
	// watches of subdirectories). An error it returns fails that load as a
	// failed read would, and read is not called.
	sync func(*fsnotify.Watcher) error
}

// run watches w.dir, delivers the first snapshot, closes Initialized, and
// then reloads on every relevant event, retrying failed reads, until ctx
// is done. It returns nil then, or an error wrapping ErrWatch when the
// watch cannot be set up. Every goroutine it starts (fsnotify's) has
// exited when it returns.
func (s *source) run(ctx context.Context, sink bundles.Sink, w watch) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		s.rec.MarkInitialized()
		return fmt.Errorf("%w: %w", ErrWatch, err)
	}
	defer fw.Close()
	if err := fw.Add(w.dir); err != nil {
		s.rec.MarkInitialized()
		return fmt.Errorf("%w: %s: %w", ErrWatch, w.name, err)
	}
	reload := func() bool {
		read := w.read
		if w.sync != nil {
			if err := w.sync(fw); err != nil {
				read = func() (*bundles.Snapshot, error) { return nil, err }
			}
		}
		return s.reload(ctx, sink, read)
	}
	retry := reload()
	s.rec.MarkInitialized()
	l := filewatch.Loop{Debounce: s.debounce, Retry: s.retry, What: "policy", Log: s.log}
	return l.Run(ctx, fw, w.relevant, reload, retry)
}

// reload reads with read and hands the snapshot to sink through the
// Recorder, which logs and counts what changed. It returns true when the
// read failed and should be retried.
func (s *source) reload(ctx context.Context, sink bundles.Sink, read func() (*bundles.Snapshot, error)) bool {
	start := s.now()
	snap, err := read()
	if err != nil {
		s.rec.Failed(start, slog.LevelError, "policy reload failed", err)
		return true
	}
	_ = s.rec.Deliver(ctx, sink, snap, start) // recorded and logged there
	return false
}
