package local

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/verdict-pdp/verdict/bundles"
)

// FileOptions configures a File. Every zero value means the documented
// default.
type FileOptions struct {
	// Path is the bundle file, an OPA bundle .tar.gz (required). It may be a
	// symbolic link (a ConfigMap or Secret key); links are followed.
	Path string
	// Origin names the source in snapshots and status; "" means
	// "bundle:"+Path.
	Origin string
	// Verify configures signature verification. With a key set, a bundle
	// whose .signatures.json is missing or does not verify is refused and
	// the previous snapshot keeps serving.
	Verify bundles.VerifyOptions
	// Debounce is how long the file must be quiet after an event before it
	// is re-read; 0 means 40 ms.
	Debounce time.Duration
	// RetryInterval is how soon a failed read (missing, half-written or
	// invalid file) is retried without a new event; 0 means 1 s.
	RetryInterval time.Duration
	// MaxBytes refuses a bundle file larger than this; 0 means
	// bundles.DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// MaxFileBytes refuses any file inside the bundle larger than this,
	// uncompressed; 0 means bundles.DefaultMaxFileBytes (16 MiB).
	MaxFileBytes int64
	// MaxUnpackedBytes refuses a bundle whose files add up to more than
	// this, uncompressed; 0 means bundles.DefaultMaxUnpackedBytes (128 MiB).
	// Decompression stops at the first byte over it, so a small file that
	// expands to gigabytes costs no more memory than this.
	MaxUnpackedBytes int64
	// MaxFiles refuses a bundle of more than this many files; 0 means
	// bundles.DefaultMaxFiles (10,000).
	MaxFiles int
	// Logger receives reload and error logs; nil discards them.
	Logger *slog.Logger
	// Observer is told about every reload attempt; nil means none.
	Observer bundles.Observer
	// Now is the clock for status and ReadAt; nil means time.Now.
	Now func() time.Time
}

// File is a Source that reads an OPA bundle file (.manifest revision and
// roots, data, modules, optional signatures) with OPA's bundle reader and
// delivers a new snapshot whenever the file changes. It watches the file's
// directory, so replacing the file by rename, deleting and recreating it,
// and ConfigMap symlink swaps are all seen.
//
// A File is safe for concurrent use: Status and Initialized may be called
// while Run runs. Run must be called at most once at a time.
type File struct {
	path     string
	dir      string
	opts     FileOptions
	log      *slog.Logger
	now      func() time.Time
	rec      *bundles.Recorder
	debounce time.Duration
	retry    time.Duration
}

var _ bundles.Source = (*File)(nil)

// NewFile validates opts (including the verification key) and returns a
// File. It starts nothing.
func NewFile(opts FileOptions) (*File, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("%w: Path is required", ErrOptions)
	}
	if opts.Debounce < 0 || opts.RetryInterval < 0 || opts.MaxBytes < 0 || opts.MaxFileBytes < 0 ||
		opts.MaxUnpackedBytes < 0 || opts.MaxFiles < 0 {
		return nil, fmt.Errorf("%w: negative duration or size", ErrOptions)
	}
	if _, err := opts.Verify.Config(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	abs, err := absPath(opts.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	if opts.Origin == "" {
		opts.Origin = "bundle:" + opts.Path
	}
	f := &File{path: abs, dir: filepath.Dir(abs), opts: opts, log: logger(opts.Logger),
		now: opts.Now, debounce: opts.Debounce, retry: opts.RetryInterval}
	if f.now == nil {
		f.now = time.Now
	}
	if f.debounce == 0 {
		f.debounce = defaultDebounce
	}
	if f.retry == 0 {
		f.retry = defaultRetry
	}
	f.rec = bundles.NewRecorder(opts.Origin, opts.Observer, f.now)
	return f, nil
}

// Status returns the source's current status.
func (f *File) Status() bundles.Status { return f.rec.Status() }

// Initialized returns a channel closed once Run's first load attempt has
// finished, successfully or not.
func (f *File) Initialized() <-chan struct{} { return f.rec.Initialized() }

// Run reads the bundle, hands the snapshot to sink, then watches the file
// and delivers every new snapshot until ctx is done. The first load happens
// before Run waits for events; a missing or bad bundle is reported in Status
// and retried. Run returns nil when ctx is done, or an error wrapping
// ErrWatch if the file's directory cannot be watched when Run starts.
func (f *File) Run(ctx context.Context, sink bundles.Sink) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		f.rec.MarkInitialized()
		return fmt.Errorf("%w: %w", ErrWatch, err)
	}
	defer w.Close()
	if err := w.Add(f.dir); err != nil {
		f.rec.MarkInitialized()
		return fmt.Errorf("%w: %s: %w", ErrWatch, f.dir, err)
	}
	reload := func() bool {
		return deliver(ctx, f.log, f.rec, sink, f.opts.Origin, f.now, f.read)
	}
	retry := reload()
	f.rec.MarkInitialized()
	l := loop{debounce: f.debounce, retry: f.retry, log: f.log}
	return l.run(ctx, w, f.relevant, reload, retry)
}

func (f *File) read() (*bundles.Snapshot, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bundles.ErrRead, err)
	}
	defer fh.Close()
	return bundles.ReadTarball(fh, bundles.TarballOptions{
		Origin: f.opts.Origin, Verify: f.opts.Verify, MaxBytes: f.opts.MaxBytes,
		MaxFileBytes: f.opts.MaxFileBytes, MaxUnpackedBytes: f.opts.MaxUnpackedBytes,
		MaxFiles: f.opts.MaxFiles, Now: f.now,
	})
}

// relevant reports whether an event in the file's directory may concern
// the bundle: the file itself, its directory, or a ConfigMap swap.
func (f *File) relevant(ev fsnotify.Event) bool {
	p := filepath.Clean(ev.Name)
	return p == f.path || p == f.dir || k8sName(filepath.Base(p))
}
