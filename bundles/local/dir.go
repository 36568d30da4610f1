package local

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// DirOptions configures a Dir. Every zero value means the documented default.
type DirOptions struct {
	// Dir is the policy directory (required). It may itself be, or contain,
	// symbolic links; they are followed.
	Dir string
	// Origin names the source in snapshots and status; "" means "dir:"+Dir.
	Origin string
	// Debounce is how long the directory must be quiet after an event before
	// it is re-read; 0 means 40 ms. A continuous stream of events delays a
	// reload by at most 20 debounces.
	Debounce time.Duration
	// RetryInterval is how soon a failed read (a file vanished mid-read, the
	// directory was removed, a file that does not parse) is retried without
	// a new event; 0 means 1 s. A retry that fails the same way is neither
	// logged nor counted again.
	RetryInterval time.Duration
	// Limits bounds every read of the directory; zero fields mean the
	// defaults. MaxFiles also bounds the directories watched: a tree of
	// more is refused before it is read.
	bundles.Limits
	// Logger receives reload and error logs; nil discards them.
	Logger *slog.Logger
	// Observer is told about every counted outcome (see bundles.Observer);
	// nil means none.
	Observer bundles.Observer
	// Now is the clock for status and ReadAt; nil means time.Now.
	Now func() time.Time
}

// Dir is a Source that watches a policy directory recursively and delivers
// a new snapshot whenever its content changes. Data files (data.json,
// data.yaml) map to data paths by directory, as in OPA bundles; hidden files
// and editor swap and backup files are ignored; the revision is a content
// hash unless a .manifest names one.
//
// A Dir is safe for concurrent use: Status and Initialized may be called
// while Run runs. Run must be called at most once at a time.
type Dir struct {
	*source
	dir  string
	opts DirOptions
}

var _ bundles.Source = (*Dir)(nil)

// NewDir validates opts and returns a Dir. It does not touch the file system
// beyond resolving Dir to an absolute path, and starts nothing.
func NewDir(opts DirOptions) (*Dir, error) {
	src, abs, err := newSource(settings{field: "Dir", path: opts.Dir, origin: opts.Origin, scheme: "dir:",
		debounce: opts.Debounce, retry: opts.RetryInterval, sizes: []int64{opts.MaxFileBytes, opts.MaxUnpackedBytes, int64(opts.MaxFiles)},
		logger: opts.Logger, observer: opts.Observer, now: opts.Now})
	if err != nil {
		return nil, err
	}
	return &Dir{source: src, dir: abs, opts: opts}, nil
}

// Run reads the directory, hands the snapshot to sink, then watches for
// changes and delivers every new snapshot until ctx is done. The first load
// happens before Run waits for events. A failed read is retried every
// RetryInterval; a policy error never stops Run. Run returns nil when ctx
// is done, or an error wrapping ErrWatch if the directory cannot be
// watched when Run starts.
func (d *Dir) Run(ctx context.Context, sink bundles.Sink) error {
	real, _ := filepath.EvalSymlinks(d.dir) // "" when missing: synced at once
	watched := map[string]string{d.dir: real}
	return d.run(ctx, sink, watch{
		dir: d.dir, name: d.opts.Dir, relevant: d.relevant, read: d.read,
		sync: func(w *fsnotify.Watcher) error { return d.syncWatches(w, watched) },
	})
}

func (d *Dir) read() (*bundles.Snapshot, error) { return bundles.ReadDir(d.dir, d.readOptions()) }

// readOptions are the options of every read of the directory, and of the
// walk that finds the directories to watch (bundles.PolicyDirs), so that
// what is watched is what is read.
func (d *Dir) readOptions() bundles.ReadOptions {
	return bundles.ReadOptions{Origin: d.origin, Limits: d.opts.Limits, Now: d.now}
}

// relevant reports whether an event may change the policy set.
func (d *Dir) relevant(ev fsnotify.Event) bool {
	base := filepath.Base(ev.Name)
	if filewatch.KubeName(base) || filepath.Clean(ev.Name) == d.dir {
		return true
	}
	if !bundles.IgnoredName(base, false) {
		return true
	}
	// An ignored file name may still be a (new) directory, e.g. "v1.bak/".
	if info, err := os.Stat(ev.Name); err == nil && info.IsDir() {
		return !bundles.IgnoredName(base, true)
	}
	return false
}

// syncWatches makes the watch set equal to the directories the read lists
// (bundles.PolicyDirs): it adds new (and re-targeted symlinked, or made
// again) directories and drops vanished ones.
// fsnotify does not recurse, so every directory is watched on its own.
// A tree of more than MaxFiles directories is an error (the read would
// refuse it too); the first MaxFiles are watched all the same, so that the
// change that fixes the tree is seen.
func (d *Dir) syncWatches(w *fsnotify.Watcher, watched map[string]string) error {
	want, walkErr := bundles.PolicyDirs(d.dir, d.readOptions())
	// fsnotify drops a watch when its directory is removed or renamed; a
	// directory made again at the same path (rm -r lib; mkdir lib, or a
	// swap by rename) has the same path and real path, and must be watched
	// again.
	active := map[string]bool{}
	for _, p := range w.WatchList() {
		active[p] = true
	}
	for p, real := range watched {
		if r, ok := want[p]; !ok || r != real || !active[p] {
			_ = w.Remove(p) // may already be gone with its directory
			delete(watched, p)
		}
	}
	for p, real := range want {
		if _, ok := watched[p]; ok {
			continue
		}
		if err := w.Add(p); err != nil {
			d.log.Warn("policy watch failed", "path", p, "error", err)
			continue
		}
		watched[p] = real
	}
	return walkErr
}
