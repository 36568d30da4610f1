package bundles

import (
	"archive/tar"
	"bufio"
	"bytes"
	"cmp"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"path"
	"path/filepath"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/loader/filter"
)

// Default limits, applied when a field of Limits (or MaxBytes) is zero. The
// configuration layer documents them; sources in bundles/local and
// bundles/remote use the same.
const (
	// DefaultMaxBytes is the largest compressed bundle archive read: 64 MiB.
	DefaultMaxBytes = 64 << 20
	// DefaultMaxFileBytes is the largest single file, uncompressed: 16 MiB.
	DefaultMaxFileBytes = 16 << 20
	// DefaultMaxUnpackedBytes is the most a bundle's files may add up to,
	// uncompressed: 128 MiB.
	DefaultMaxUnpackedBytes = 128 << 20
	// DefaultMaxFiles is the most files a bundle may hold: 10,000.
	DefaultMaxFiles = 10_000
)

// Limits bounds what reading one policy set (a directory or a bundle
// archive) may cost. It is counted while the files are read, before
// anything in them is parsed or trusted; the read stops at the first limit
// exceeded with an error wrapping ErrTooLarge that names it. A directory
// over a limit is refused as soon as its listing shows it, before any file
// is read. A zero field means its default; a negative one is an options
// error (wrapping ErrConfig here, and ErrOptions in bundles/local and
// bundles/remote).
//
// ReadOptions, TarballOptions and the options of the sources in
// bundles/local and bundles/remote embed Limits, so that one value set once
// bounds every way a policy set is read.
type Limits struct {
	// MaxFileBytes refuses any single file larger than this, uncompressed;
	// 0 means DefaultMaxFileBytes (16 MiB).
	MaxFileBytes int64
	// MaxUnpackedBytes refuses a policy set whose files add up to more than
	// this many bytes, uncompressed; 0 means DefaultMaxUnpackedBytes
	// (128 MiB). Decompression stops at the first byte over it, before any
	// signature is checked, so a small archive that expands to gigabytes
	// costs no more memory than this. An archive's own bytes (headers,
	// padding, directory entries) are not counted here, but decompression
	// also stops once they exceed 8 KiB per allowed file.
	//
	// It also bounds what parsing the data files (data.json, data.yaml,
	// .manifest and any name ending in .manifest or .manifest.pb,
	// .signatures.json) is estimated to allocate, all together, before any
	// is parsed; that is many times their size: about 170 bytes a JSON
	// value, 1.5 KiB a YAML value, 512 bytes a byte of a protobuf
	// manifest, 128 bytes for every pair of a manifest's root segments, and
	// more for its file_rego_versions patterns.
	MaxUnpackedBytes int64
	// MaxFiles refuses a policy set of more than this many files; 0 means
	// DefaultMaxFiles (10,000). Every regular file of an archive counts,
	// .manifest and .signatures.json included (directory entries are not
	// files); in a directory, ignored files (IgnoredName) and files that
	// ReadOptions.Skip leaves out do not count, and no more than this
	// many directories are read either.
	MaxFiles int
}

// tarOverheadPerFile is how many of an archive's own bytes (headers,
// padding, entries other than regular files) are allowed per file on top of
// the files' content before decompression stops: a 512-byte header, up to
// 511 bytes of padding and a PAX or GNU long-name record for a long path fit
// with room to spare.
const tarOverheadPerFile = 8 << 10

// limits bounds one read: Limits with the defaults applied. Its fields are
// always positive.
type limits struct {
	fileBytes  int64 // any one file
	totalBytes int64 // all files together
	files      int   // number of files
}

// newLimits applies the defaults to l's zero fields and refuses negative
// ones.
func newLimits(l Limits) (limits, error) {
	var errs []error
	if l.MaxFileBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxFileBytes is negative", ErrConfig))
	}
	if l.MaxUnpackedBytes < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxUnpackedBytes is negative", ErrConfig))
	}
	if l.MaxFiles < 0 {
		errs = append(errs, fmt.Errorf("%w: MaxFiles is negative", ErrConfig))
	}
	if len(errs) > 0 {
		return limits{}, errors.Join(errs...)
	}
	return limits{
		fileBytes:  cmp.Or(l.MaxFileBytes, DefaultMaxFileBytes),
		totalBytes: cmp.Or(l.MaxUnpackedBytes, DefaultMaxUnpackedBytes),
		files:      cmp.Or(l.MaxFiles, DefaultMaxFiles),
	}, nil
}

// check reports the first limit exceeded once the bundle holds files files
// of total bytes, the last of them name of size bytes (-1 when unknown).
func (l limits) check(files int, total int64, name string, size int64) error {
	switch {
	case files > l.files:
		return fmt.Errorf("%w: bundle has more than %d files", ErrTooLarge, l.files)
	case size > l.fileBytes:
		return fmt.Errorf("%w: bundle file %q is larger than %d bytes", ErrTooLarge, name, l.fileBytes)
	case total > l.totalBytes:
		return fmt.Errorf("%w: bundle unpacks to more than %d bytes", ErrTooLarge, l.totalBytes)
	}
	return nil
}

// archiveBytes is how far a tar stream may be decompressed: the files'
// limit plus tarOverheadPerFile for each file and for the end of the
// archive.
func (l limits) archiveBytes() int64 {
	overhead := (int64(l.files) + 1) * tarOverheadPerFile
	if l.totalBytes > math.MaxInt64-overhead {
		return math.MaxInt64
	}
	return l.totalBytes + overhead
}

// entry is one unpacked file.
type entry struct {
	path string // as OPA's loader names it, e.g. "/authz/authz.rego"
	url  string
	data []byte
}

// pending is a file a source has reached but not read.
type pending struct {
	path, url string
	// size is the file's size when the source knows it before reading,
	// else -1.
	size int64
	// read returns the file's content, at most n bytes of it.
	read func(n int64) ([]byte, error)
	// close releases the file; nil means nothing to release.
	close func() error
}

// source yields a bundle's files one at a time; next returns io.EOF after
// the last. A pending file is valid only until the next call.
type source interface {
	next() (pending, error)
}

// collect reads every file of src into memory, stopping at the first limit
// exceeded: before reading a file whose size is known, and otherwise as soon
// as one byte too many has been read.
func collect(src source, lim limits) ([]entry, error) {
	var (
		files []entry
		total int64
	)
	for {
		p, err := src.next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return nil, err
		}
		data, err := readPending(p, lim, len(files)+1, total)
		if p.close != nil {
			_ = p.close() // read-only: a close error cannot lose data
		}
		if err != nil {
			return nil, err
		}
		total += int64(len(data))
		files = append(files, entry{path: p.path, url: p.url, data: data})
	}
}

// readPending reads p as the n-th file of a bundle whose earlier files
// hold total bytes.
func readPending(p pending, lim limits, n int, total int64) ([]byte, error) {
	if err := lim.check(n, total+max(p.size, 0), p.path, p.size); err != nil {
		return nil, err
	}
	room := min(lim.fileBytes, lim.totalBytes-total)
	data, err := p.read(room + 1)
	if err != nil {
		return nil, err
	}
	size := int64(len(data))
	if err := lim.check(n, total+size, p.path, size); err != nil {
		return nil, err
	}
	return data, nil
}

// capReader reads from r and fails with over once more than max bytes have
// been read, so that a limit is noticed while the stream is read.
type capReader struct {
	r    io.Reader
	max  int64
	n    int64
	over error
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.exceeded() {
		return 0, c.over
	}
	if room := c.max + 1 - c.n; int64(len(p)) > room {
		p = p[:room]
	}
	k, err := c.r.Read(p)
	c.n += int64(k)
	if c.exceeded() {
		return k, c.over
	}
	return k, err
}

func (c *capReader) exceeded() bool { return c.n > c.max }

// gzipMagic begins every gzip stream (RFC 1952).
var gzipMagic = []byte{0x1f, 0x8b}

// tarSource streams the regular files of a gzipped tar archive, as OPA's
// tarball loader would list them, without reading ahead: each file's
// content is read from the decompressor only when collect asks for it.
type tarSource struct {
	tr   *tar.Reader
	caps []*capReader // checked first when reading fails
}

// newTarSource starts decompressing r. compressed, when not nil, is the cap
// on r (so its error takes precedence); the decompressed stream is capped at
// lim.archiveBytes().
func newTarSource(r io.Reader, compressed *capReader, lim limits) (*tarSource, error) {
	t := &tarSource{}
	if compressed != nil {
		t.caps = append(t.caps, compressed)
	}
	br := bufio.NewReader(r)
	magic, err := br.Peek(2)
	switch {
	case errors.Is(err, io.EOF) || err == nil && !bytes.Equal(magic, gzipMagic):
		// Said before gzip does: its "invalid header" or "unexpected EOF"
		// (a body too short for a header, such as a proxy's error page)
		// reads like a damaged archive.
		return nil, ErrNotGzip
	case err != nil:
		return nil, t.fail(err)
	}
	zr, err := gzip.NewReader(br)
	if err != nil {
		return nil, t.fail(err)
	}
	stream := &capReader{r: zr, max: lim.archiveBytes(), over: fmt.Errorf(
		"%w: bundle archive unpacks to more than %d bytes with its headers", ErrTooLarge, lim.archiveBytes())}
	t.caps = append(t.caps, stream)
	t.tr = tar.NewReader(stream)
	return t, nil
}

// fail turns a read error into the error of an exceeded cap, if any.
func (t *tarSource) fail(err error) error {
	for _, c := range t.caps {
		if c.exceeded() {
			return c.over
		}
	}
	return fmt.Errorf("archive read failed: %w", err)
}

func (t *tarSource) next() (pending, error) {
	for {
		h, err := t.tr.Next()
		if err == io.EOF {
			return pending{}, io.EOF
		}
		if err != nil {
			return pending{}, t.fail(err)
		}
		// Like OPA's tarball loader: only regular files are bundle files.
		if h.Typeflag != tar.TypeReg {
			continue
		}
		name, size := h.Name, h.Size
		return pending{
			path: name,
			url:  filepath.Join("", name), // OPA's URL for an empty base URL
			size: size,
			read: func(n int64) ([]byte, error) {
				// collect refused sizes over n already; tar enforces size.
				buf := make([]byte, min(size, n))
				if _, err := io.ReadFull(t.tr, buf); err != nil {
					return nil, t.fail(fmt.Errorf("file %q: %w", name, err))
				}
				return buf, nil
			},
		}, nil
	}
}

// fsSource reads the files an OPA directory loader lists. listErr is set by
// the loader's filter when the listing already exceeds a limit; sizes holds
// the sizes it listed, by slash-separated path relative to the root.
type fsSource struct {
	loader  bundle.DirectoryLoader
	listErr *error
	sizes   map[string]int64
}

func (s *fsSource) next() (pending, error) {
	d, err := s.loader.NextFile()
	if *s.listErr != nil {
		if d != nil {
			_ = d.Close()
		}
		return pending{}, *s.listErr
	}
	if err != nil {
		return pending{}, err
	}
	// The listed size (a file may have changed since) sizes the buffer, so
	// that reading a file allocates it about once rather than growing it
	// by doubling to up to four times its size.
	listed := max(s.sizes[strings.TrimPrefix(path.Clean("/"+d.Path()), "/")], 0)
	return pending{
		path: d.Path(),
		url:  d.URL(),
		size: -1,
		read: func(n int64) ([]byte, error) {
			buf := bytes.NewBuffer(make([]byte, 0, min(listed, n)+bytes.MinRead))
			if _, err := d.Read(buf, n); err != nil && err != io.EOF {
				return nil, fmt.Errorf("file %q: %w", d.Path(), err)
			}
			return buf.Bytes(), nil
		},
		close: d.Close,
	}, nil
}

// replay is the bundle.DirectoryLoader through which OPA's bundle reader
// parses files already collected (and so already bounded). Filtering and
// path formatting happened while collecting: its With methods do nothing.
type replay struct {
	files []entry
	i     int
}

var _ bundle.DirectoryLoader = (*replay)(nil)

// NextFile returns the next collected file, or io.EOF.
func (r *replay) NextFile() (*bundle.Descriptor, error) {
	if r.i >= len(r.files) {
		return nil, io.EOF
	}
	e := r.files[r.i]
	r.i++
	// A *bytes.Buffer is what OPA's reader takes without copying.
	return bundle.NewDescriptor(e.url, e.path, bytes.NewBuffer(e.data)), nil
}

// WithFilter does nothing.
func (r *replay) WithFilter(filter.LoaderFilter) bundle.DirectoryLoader { return r }

// WithPathFormat does nothing.
func (r *replay) WithPathFormat(bundle.PathFormat) bundle.DirectoryLoader { return r }

// WithSizeLimitBytes does nothing.
func (r *replay) WithSizeLimitBytes(int64) bundle.DirectoryLoader { return r }

// WithFollowSymlinks does nothing.
func (r *replay) WithFollowSymlinks(bool) bundle.DirectoryLoader { return r }

// parse reads collected files into a bundle with OPA's bundle reader (Rego
// v1), verifying them with vc when it is not nil.
func parse(files []entry, maxFileBytes int64, vc *bundle.VerificationConfig) (bundle.Bundle, error) {
	rd := bundle.NewCustomReader(&replay{files: files}).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(maxFileBytes)
	if vc != nil {
		rd = rd.WithBundleVerificationConfig(vc)
	} else {
		rd = rd.WithSkipBundleVerification(true)
	}
	b, err := rd.Read()
	if err != nil {
		return b, locateFileError(files, err)
	}
	if b.Type() == bundle.DeltaBundleType {
		// A snapshot has no way to carry a patch: reading one as an empty
		// policy set would silently deny everything.
		return bundle.Bundle{}, errors.New("delta bundles are not supported")
	}
	return b, nil
}
