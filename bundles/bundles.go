package bundles

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
)

// ErrRead is wrapped by every error that comes from reading a policy set.
var ErrRead = errors.New("bundles: read failed")

// ErrLinkOut is a symbolic link out of the directory ReadDir reads with
// ReadOptions.NoLinksOut (a *LinkOutError says which); errors wrapping it
// wrap ErrRead too.
var ErrLinkOut = errors.New("bundles: a link out of the policy directory")

// LinkOutError is ErrLinkOut for the link at Path (slash separated,
// relative to the directory read).
type LinkOutError struct{ Path string }

func (e *LinkOutError) Error() string { return ErrLinkOut.Error() + ": " + e.Path }

// Unwrap makes errors.Is(err, ErrLinkOut) hold.
func (e *LinkOutError) Unwrap() error { return ErrLinkOut }

// Module is one Rego source file of a Snapshot.
type Module struct {
	// Path names the file in errors and status, relative to the snapshot root
	// (for example "authz/rbac.rego").
	Path string
	// Raw is the file's source.
	Raw []byte
}

// IsTest reports whether the module is a Rego test file (*_test.rego). Test
// modules travel with a snapshot so that `verdict test` can run them; the
// engine does not compile them for serving.
func (m Module) IsTest() bool { return strings.HasSuffix(m.Path, "_test.rego") }

// Snapshot is one complete policy set. A Snapshot is immutable once built:
// sources build a new one for every change and never modify one they have
// handed out, so it is safe to share between goroutines.
type Snapshot struct {
	// Revision names this policy set. It is the bundle manifest's revision
	// when there is one, else a content hash of every module and data file.
	Revision string
	// Origin says where the snapshot came from, e.g. "dir:./policies",
	// "embedded", "bundle:authz.tar.gz" or a bundle URL.
	Origin string
	// Modules are the Rego files, sorted by Path.
	Modules []Module
	// Data is the base document (data.json / data.yaml merged by directory).
	// It is never nil.
	Data map[string]any
	// Roots are the manifest's roots, when the bundle declares them.
	Roots []string
	// ReadAt is when the source finished reading the snapshot.
	ReadAt time.Time
}

// Sink receives snapshots from a Source. Load must compile and validate the
// snapshot completely before it takes effect, and must keep the previous one
// when it returns an error.
type Sink interface {
	Load(ctx context.Context, s *Snapshot) error
}

// SinkFunc adapts a function to a Sink.
type SinkFunc func(ctx context.Context, s *Snapshot) error

// Load calls f(ctx, s).
func (f SinkFunc) Load(ctx context.Context, s *Snapshot) error { return f(ctx, s) }

// Source delivers snapshots to a Sink until its context is cancelled. Run
// blocks; it returns nil after ctx is done, or an error if the source cannot
// work at all.
type Source interface {
	Run(ctx context.Context, sink Sink) error
}

// ReadOptions tunes ReadFS and ReadDir. The zero value reads everything
// that is not ignored, within the default limits.
type ReadOptions struct {
	// Origin is copied to the snapshot's Origin.
	Origin string
	// Skip, when set, is asked about every file and directory path (slash
	// separated, relative to the root); returning true leaves it out.
	Skip func(path string, isDir bool) bool
	// Limits bounds the read; zero fields mean the defaults.
	Limits
	// Now stamps ReadAt; nil means time.Now.
	Now func() time.Time
	// NoLinksOut makes ReadDir refuse (ErrLinkOut) a symbolic link that
	// leads out of the directory, to a file or a directory outside it:
	// for reading a tree someone else wrote, such as a pull request's,
	// where such a link makes any file the reader can read part of the
	// policy (a credential shown in a parse error, data a test prints).
	// Links that stay inside (a ConfigMap's) are followed as always.
	NoLinksOut bool
}

// skips reports whether a read leaves out the file or directory at p
// (slash separated, relative to the root): an ignored name (IgnoredName)
// or a path Skip rejects.
func (o ReadOptions) skips(p string, isDir bool) bool {
	return IgnoredName(path.Base(p), isDir) || (o.Skip != nil && o.Skip(p, isDir))
}

// ReadDir reads the policy directory at dir into a Snapshot. Hidden files
// and directories (names starting with "." other than .manifest) and editor
// backup and swap files are ignored. Symbolic links to files and directories
// are followed (a Kubernetes ConfigMap volume is a farm of symlinks into a
// hidden "..data" directory); a link to a directory is skipped where it
// leads to one already read through another link or to an ancestor, so
// that a directory is read through one link at most, besides its own
// path, and a dangling link is ignored. A file that is not a regular
// file (a FIFO, a device) is refused without blocking, also one swapped
// in after the listing. Limits and errors are those of ReadFS.
// PolicyDirs returns the directories it lists, for a watcher to watch.
func ReadDir(dir string, opts ReadOptions) (*Snapshot, error) {
	if opts.Origin == "" {
		opts.Origin = "dir:" + dir
	}
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrRead, dir)
	}
	return ReadFS(newFollowFS(dir, opts.NoLinksOut), opts)
}

// ReadFS reads fsys, laid out like an OPA bundle, into a Snapshot with OPA's
// bundle reader (Rego v1). Ignored files are those IgnoredName reports, plus
// whatever opts.Skip rejects.
//
// The limits are checked twice: against the sizes the file system reports
// while the tree is listed (so a policy directory pointed at a huge tree
// fails fast, without reading a file), and against the bytes actually read
// (files may grow in between). Files are read one at a time and each is
// closed before the next is opened. Before any is parsed, the cost of
// parsing the data files is estimated and bounded, as for ReadTarball.
//
// Errors wrap ErrRead, and also ErrTooLarge when a limit is exceeded;
// negative limits give an error wrapping ErrConfig.
func ReadFS(fsys fs.FS, opts ReadOptions) (*Snapshot, error) {
	lim, err := newLimits(opts.Limits)
	if err != nil {
		return nil, err
	}
	loader, err := bundle.NewFSLoader(fsys)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	// The listing pre-check: once a limit is exceeded, every further file
	// and directory is filtered out, which prunes the rest of the walk.
	var (
		listErr error
		listed  int
		dirs    int
		sizes   int64
		listing = map[string]int64{} // path → size, to size read buffers
	)
	loader = loader.WithFilter(func(abspath string, info fs.FileInfo, _ int) bool {
		p := strings.TrimPrefix(path.Clean("/"+abspath), "/")
		if p == "" || p == "." {
			return false
		}
		if listErr != nil {
			return true
		}
		if opts.skips(p, info.IsDir()) {
			return true
		}
		if info.IsDir() {
			// Directories count against MaxFiles too, so that a tree of
			// directories with no file in it (or links into one, such as
			// a link to /) cannot keep the walk going.
			dirs++
			if dirs > lim.files {
				listErr = fmt.Errorf("%w: bundle has more than %d directories", ErrTooLarge, lim.files)
			}
			return listErr != nil
		}
		listed++
		sizes += max(info.Size(), 0)
		listing[p] = info.Size()
		listErr = lim.check(listed, sizes, p, info.Size())
		return listErr != nil
	})
	files, err := collect(&fsSource{loader: loader, listErr: &listErr, sizes: listing}, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if err := lim.checkParse(files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	b, err := parse(files, lim.fileBytes, nil)
	if err != nil {
		return nil, readFailed(files, err)
	}
	return FromBundle(&b, opts.Origin, stamp(opts.Now)), nil
}

// stamp returns now(), or time.Now() when now is nil.
func stamp(now func() time.Time) time.Time {
	if now == nil {
		return time.Now()
	}
	return now()
}

// FromBundle converts a bundle read by OPA's bundle package into a Snapshot.
// The snapshot copies module sources; b must not be modified afterwards if
// its Data is still shared.
func FromBundle(b *bundle.Bundle, origin string, readAt time.Time) *Snapshot {
	s := &Snapshot{
		Origin: origin,
		Data:   b.Data,
		ReadAt: readAt,
	}
	if s.Data == nil {
		s.Data = map[string]any{}
	}
	for _, m := range b.Modules {
		p := m.Path
		if m.RelativePath != "" {
			p = m.RelativePath
		}
		s.Modules = append(s.Modules, Module{Path: strings.TrimPrefix(p, "/"), Raw: m.Raw})
	}
	sort.Slice(s.Modules, func(i, j int) bool { return s.Modules[i].Path < s.Modules[j].Path })
	if b.Manifest.Roots != nil {
		s.Roots = append([]string(nil), (*b.Manifest.Roots)...)
	}
	s.Revision = b.Manifest.Revision
	if s.Revision == "" {
		s.Revision = ContentHash(s)
	}
	return s
}

// ContentHash returns a short, stable hash of a snapshot's modules and data:
// the same files always give the same revision, on every replica.
func ContentHash(s *Snapshot) string {
	h := sha256.New()
	for _, m := range s.Modules {
		fmt.Fprintf(h, "module %q %d\n", m.Path, len(m.Raw))
		h.Write(m.Raw)
	}
	// ast.MustInterfaceToValue gives a canonical (key-sorted) rendering.
	if v, err := ast.InterfaceToValue(s.Data); err == nil {
		fmt.Fprintf(h, "data %s\n", v.String())
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// IgnoredName reports whether a file or directory name is never part of a
// policy set: hidden names (except OPA's .manifest and .signatures.json
// files), and editor backup, swap and temporary files.
func IgnoredName(name string, isDir bool) bool {
	switch {
	case name == ".manifest" || name == ".signatures.json":
		return isDir
	case strings.HasPrefix(name, "."), strings.HasPrefix(name, "#"):
		return true
	case isDir:
		return false
	case strings.HasSuffix(name, "~"),
		strings.HasSuffix(name, ".swp"), strings.HasSuffix(name, ".swx"),
		strings.HasSuffix(name, ".tmp"), strings.HasSuffix(name, ".bak"),
		strings.HasSuffix(name, "___jb_tmp___"), strings.HasSuffix(name, "___jb_old___"):
		return true
	}
	return false
}
