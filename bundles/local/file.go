package local

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/internal/regularfile"
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
	// Verify returns the signature verification in service, asked before
	// every read of the bundle, so that a rotated key is used from the next
	// read on (a bundle refused is read again every RetryInterval); nil
	// means none. With a key, a bundle whose .signatures.json is missing or
	// does not verify is refused and the previous snapshot keeps serving.
	Verify bundles.Verification
	// Debounce is how long the file must be quiet after an event before it
	// is re-read; 0 means 40 ms.
	Debounce time.Duration
	// RetryInterval is how soon a failed read (missing, half-written or
	// invalid file) is retried without a new event; 0 means 1 s. A retry
	// that fails the same way is neither logged nor counted again.
	RetryInterval time.Duration
	// MaxBytes refuses a bundle file larger than this; 0 means
	// bundles.DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// Limits bounds every read of the bundle, unpacked; zero fields mean
	// the defaults.
	bundles.Limits
	// Logger receives reload and error logs; nil discards them.
	Logger *slog.Logger
	// Observer is told about every counted outcome (see bundles.Observer);
	// nil means none.
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
	*source
	path string
	dir  string
	opts FileOptions
}

var _ bundles.Source = (*File)(nil)

// NewFile validates opts (including the verification key) and returns a
// File. It starts nothing.
func NewFile(opts FileOptions) (*File, error) {
	verify, err := opts.Verify.Current()
	if err == nil {
		err = verify.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	src, abs, err := newSource(settings{field: "Path", path: opts.Path, origin: opts.Origin, scheme: "bundle:",
		debounce: opts.Debounce, retry: opts.RetryInterval, sizes: []int64{opts.MaxBytes, opts.MaxFileBytes, opts.MaxUnpackedBytes, int64(opts.MaxFiles)},
		logger: opts.Logger, observer: opts.Observer, now: opts.Now})
	if err != nil {
		return nil, err
	}
	return &File{source: src, path: abs, dir: filepath.Dir(abs), opts: opts}, nil
}

// Run reads the bundle, hands the snapshot to sink, then watches the file
// and delivers every new snapshot until ctx is done. The first load happens
// before Run waits for events; a missing or bad bundle is reported in Status
// and retried every RetryInterval. Run returns nil when ctx is done, or an
// error wrapping ErrWatch if the file's directory cannot be watched when
// Run starts.
func (f *File) Run(ctx context.Context, sink bundles.Sink) error {
	return f.run(ctx, sink, watch{dir: f.dir, name: f.dir, relevant: f.relevant, read: f.read})
}

func (f *File) read() (*bundles.Snapshot, error) {
	fh, err := regularfile.Open(f.path) // a FIFO put in its place must not block Run
	if err != nil {
		return nil, fmt.Errorf("%w: %w", bundles.ErrRead, err)
	}
	defer fh.Close()
	o, err := f.opts.Verify.Tarball(bundles.TarballOptions{Origin: f.origin, MaxBytes: f.opts.MaxBytes, Limits: f.opts.Limits, Now: f.now})
	if err != nil {
		return nil, err
	}
	return bundles.ReadTarball(fh, o)
}

// relevant reports whether an event in the file's directory may concern
// the bundle: the file itself, its directory, or a ConfigMap swap.
func (f *File) relevant(ev fsnotify.Event) bool {
	p := filepath.Clean(ev.Name)
	return p == f.path || p == f.dir || filewatch.KubeName(filepath.Base(p))
}
