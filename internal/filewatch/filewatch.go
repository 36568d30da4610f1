// Package filewatch watches small files a running process depends on —
// keys, certificates, CA bundles — and hands their new contents to whoever
// holds them, so that a rotated file is taken up without a restart. It
// also holds the debounced event loop (Loop) that the policy sources share.
//
// A Watcher watches each file's directory rather than the file, so that
// every way a file is replaced is seen: written in place, renamed over,
// deleted and made again, a symbolic link re-pointed, or a Kubernetes
// ConfigMap or Secret volume swapping its ..data link. Files are read
// together in sets (a certificate and its key), and a set is applied only
// when the bytes of one of its files changed. A set that does not read or
// apply keeps what it had: the holder is never left with nothing, and the
// failure is logged once and retried.
package filewatch

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/verdict-pdp/verdict/internal/regularfile"
)

// Defaults of Options.
const (
	DefaultDebounce = 100 * time.Millisecond
	DefaultRetry    = 2 * time.Second
	DefaultRecheck  = time.Minute
	DefaultMaxBytes = 1 << 20
)

// ErrWatch is wrapped by errors about the watch itself (Run), as opposed
// to a file that does not read or apply.
var ErrWatch = errors.New("filewatch: cannot watch")

// Set is files read together and applied together.
type Set struct {
	// Name names the set in logs, errors and status (a configuration key,
	// such as "tls" or "tokens.issuers[0].jwks_file").
	Name string
	// Paths are the files, read in this order. At least one.
	Paths []string
	// Apply takes the files' contents, in Paths' order, and puts them in
	// service, or returns an error and adds nothing (it may still take
	// out of service what whole contents no longer hold, as key files
	// do). It is called from Load and then from Run's goroutine, never
	// concurrently.
	Apply func(contents [][]byte) error
}

// Options configure a Watcher. Every zero value means the default.
type Options struct {
	// Debounce is how long a set's directories must be quiet after an
	// event before the sets are read again; 0 means DefaultDebounce.
	Debounce time.Duration
	// Retry is how soon a set that failed is read again without an event;
	// 0 means DefaultRetry.
	Retry time.Duration
	// Recheck is how often every set is read again even without an event;
	// 0 means DefaultRecheck, negative never.
	Recheck time.Duration
	// MaxBytes refuses a file larger than this; 0 means DefaultMaxBytes.
	MaxBytes int64
	// What names the files in log lines ("credentials"); "" means "files".
	What string
	// Logger receives a line for every set taken up and every new failure;
	// nil discards them.
	Logger *slog.Logger
	// Now is the clock of Status; nil means time.Now.
	Now func() time.Time
}

// Status is what a Watcher knows about one set.
type Status struct {
	Name  string   `json:"name"`
	Paths []string `json:"paths"`
	// LoadedAt is when the contents now in service were applied.
	LoadedAt time.Time `json:"loaded_at"`
	// LastError is why the files' latest contents are not in service
	// (reported when the retry after a failure fails too), cleared when
	// contents are applied again.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Reloads counts contents applied after the first; ReloadErrors the
	// distinct failures reported.
	Reloads      uint64 `json:"reloads"`
	ReloadErrors uint64 `json:"reload_errors"`
}

// Watcher holds sets of files in service. It is safe for concurrent use:
// Status may be called while Run runs.
type Watcher struct {
	opts Options
	log  *slog.Logger
	mu   sync.Mutex // guards every set's state
	sets []*watched
}

type watched struct {
	Set
	// sums are those of the contents last applied; nil after a failure,
	// so that the next read applies whatever it finds (an Apply that
	// failed may have changed something, such as keys revoked, and the
	// old contents put back must then be applied again).
	sums   [][sha256.Size]byte
	failed bool // the last read or apply failed
	status Status
}

// New returns a Watcher holding no sets yet.
func New(opts Options) *Watcher {
	opts.Debounce = cmp.Or(opts.Debounce, DefaultDebounce)
	opts.Retry = cmp.Or(opts.Retry, DefaultRetry)
	opts.Recheck = cmp.Or(opts.Recheck, DefaultRecheck)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultMaxBytes)
	opts.What = cmp.Or(opts.What, "files")
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Watcher{opts: opts, log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler))}
}

// Add reads each set's files and applies them, and holds the set from then
// on; it returns the first error, naming the set: a file that cannot be
// read, or contents Apply refuses (the sets before it are held). Add must
// be called before Run; without Run, the files are read once.
func (w *Watcher) Add(sets ...Set) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range sets {
		if s.Name == "" || len(s.Paths) == 0 || s.Apply == nil {
			return fmt.Errorf("filewatch: set %q needs a name, paths and Apply", s.Name)
		}
		contents, sums, err := w.read(s.Paths)
		if err == nil {
			err = s.Apply(contents)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.Name, err)
		}
		w.sets = append(w.sets, &watched{Set: s, sums: sums,
			status: Status{Name: s.Name, Paths: s.Paths, LoadedAt: w.opts.Now()}})
	}
	return nil
}

// read reads paths, each at most MaxBytes, as regular files (a FIFO put in
// a file's place must not block the watch).
func (w *Watcher) read(paths []string) ([][]byte, [][sha256.Size]byte, error) {
	contents := make([][]byte, len(paths))
	sums := make([][sha256.Size]byte, len(paths))
	for i, p := range paths {
		data, err := regularfile.ReadFileMax(p, w.opts.MaxBytes)
		if err != nil {
			return nil, nil, err
		}
		contents[i], sums[i] = data, sha256.Sum256(data)
	}
	return contents, sums, nil
}

// Run watches the sets' directories and takes up every change until ctx is
// done, and returns nil then. Every set is also read again every Recheck;
// when no watch can be set up at all, that is all Run does (an error
// wrapping ErrWatch only when Recheck is off). Run must be
// called at most once.
func (w *Watcher) Run(ctx context.Context) error {
	w.mu.Lock()
	sets := slices.Clone(w.sets)
	w.mu.Unlock()
	if len(sets) == 0 {
		<-ctx.Done()
		return nil
	}
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		// Out of inotify instances, say: the files are still read again
		// every Recheck, which is better than stopping the process.
		if w.opts.Recheck < 0 {
			return fmt.Errorf("%w: %w", ErrWatch, err)
		}
		w.log.Warn(w.opts.What+" not watched", "recheck", w.opts.Recheck, "error", err)
		l := Loop{Debounce: w.opts.Debounce, Retry: w.opts.Retry, Recheck: w.opts.Recheck, What: w.opts.What, Log: w.log}
		return l.Run(ctx, nil, nil, w.reload, w.reload())
	}
	defer fw.Close()
	// names maps each watched directory to the base names that matter in
	// it: each path's own, and the file a path's links lead to (a change
	// written to it makes no event in the link's directory). Where links
	// lead is read again on every reload.
	var names map[string]map[string]bool
	watchDirs := func() error {
		next := map[string]map[string]bool{}
		add := func(p string) {
			dir := filepath.Dir(p)
			if next[dir] == nil {
				next[dir] = map[string]bool{}
			}
			next[dir][filepath.Base(p)] = true
		}
		for _, s := range sets {
			for _, p := range s.Paths {
				add(p)
				if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
					add(real)
				}
			}
		}
		for dir := range names {
			if next[dir] == nil {
				_ = fw.Remove(dir)
			}
		}
		var errs []error
		for dir := range next {
			// Again on every reload: a directory removed and made again
			// lost its watch.
			if err := fw.Add(dir); err != nil {
				errs = append(errs, err)
			}
		}
		names = next
		return errors.Join(errs...)
	}
	if err := watchDirs(); err != nil {
		w.log.Warn(w.opts.What+" watch incomplete", "recheck", w.opts.Recheck, "error", err)
	}
	relevant := func(ev fsnotify.Event) bool {
		p := filepath.Clean(ev.Name)
		if _, ok := names[p]; ok {
			return true // the directory itself
		}
		base := filepath.Base(p)
		return names[filepath.Dir(p)][base] || KubeName(base)
	}
	reload := func() bool {
		_ = watchDirs()
		return w.reload()
	}
	retry := reload() // what changed between Load and the first watch
	l := Loop{Debounce: w.opts.Debounce, Retry: w.opts.Retry, Recheck: w.opts.Recheck, What: w.opts.What, Log: w.log}
	return l.Run(ctx, fw, relevant, reload, retry)
}

// reload reads every set again and applies those whose contents changed.
// It returns true when one of them failed.
func (w *Watcher) reload() (failed bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, s := range w.sets {
		contents, sums, err := w.read(s.Paths)
		if err == nil && slices.Equal(sums, s.sums) {
			continue
		}
		if err == nil {
			err = s.Apply(contents)
		}
		if err != nil {
			failed = true
			// A failure is reported when the retry after it fails too:
			// files written one after the other (a certificate, then its
			// key) fail for a moment on every renewal, and that is no news.
			if msg := err.Error(); s.failed && msg != s.status.LastError {
				s.status.LastError, s.status.LastErrorAt = msg, w.opts.Now()
				s.status.ReloadErrors++
				w.log.Error(w.opts.What+" reload failed", "name", s.Name, "error", err)
			}
			s.sums, s.failed = nil, true
			continue
		}
		s.sums, s.failed = sums, false
		s.status.LoadedAt, s.status.LastError, s.status.LastErrorAt = w.opts.Now(), "", time.Time{}
		s.status.Reloads++
		w.log.Info(w.opts.What+" reloaded", "name", s.Name)
	}
	return failed
}

// Status returns every set's status, in the order Load was given them.
func (w *Watcher) Status() []Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Status, len(w.sets))
	for i, s := range w.sets {
		out[i] = s.status
		out[i].Paths = slices.Clone(s.status.Paths)
	}
	return out
}
