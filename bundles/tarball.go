package bundles

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
)

// ErrSignature is wrapped by every error that refuses a bundle because its
// signature is missing, does not verify, or does not cover its files.
var ErrSignature = errors.New("bundles: signature verification failed")

// ErrTooLarge is wrapped when a bundle or one of its files exceeds a limit.
var ErrTooLarge = errors.New("bundles: bundle too large")

// ErrNotGzip is wrapped when a bundle's content is not gzip'd, as every
// OPA bundle is (a .tar.gz): an HTML error page served in its place, a
// plain tar, an empty file.
var ErrNotGzip = errors.New("bundles: not a bundle: its content is not gzip'd (opa build writes bundles as .tar.gz)")

// ErrConfig is wrapped by errors about invalid options.
var ErrConfig = errors.New("bundles: invalid options")

// TarballOptions tunes ReadTarball and ReadTarballBytes. The zero value
// reads an unsigned or signed bundle without verification, within the
// default limits. Negative limits are refused with an error wrapping
// ErrConfig.
type TarballOptions struct {
	// Origin is copied to the snapshot's Origin.
	Origin string
	// Verify configures signature verification; zero means none.
	Verify VerifyOptions
	// MaxBytes refuses a compressed bundle larger than this; 0 means
	// DefaultMaxBytes (64 MiB). ReadTarballBytes does not apply it.
	MaxBytes int64
	// Limits bounds the unpacked bundle; zero fields mean the defaults.
	Limits
	// Now stamps ReadAt; nil means time.Now.
	Now func() time.Time
}

// ReadTarball reads an OPA bundle (.tar.gz: .manifest, data.json/data.yaml,
// .rego modules, optional .signatures.json) from r into a Snapshot with OPA's
// bundle reader (Rego v1). The revision is the manifest's, or a content hash.
//
// r is read once, as a stream, to its end: the archive is decompressed
// exactly once and never kept compressed, and reading stops at the first
// limit exceeded (MaxBytes, MaxFileBytes, MaxUnpackedBytes, MaxFiles).
// Only the files are kept, each in memory, until the snapshot is built.
// Then, before any file is parsed, the cost of parsing the data files is
// estimated from their bytes and bounded by MaxUnpackedBytes. With a
// verification key, the signature is checked against the unpacked files
// before any module is parsed (data files are parsed to be hashed, within
// that estimate); the files may come in any order (`opa build` writes
// .signatures.json after the data and modules, and OPA does not require it
// first).
//
// Errors wrap ErrRead, and also ErrNotGzip when r does not begin as a gzip
// stream does, ErrTooLarge when a limit is exceeded, or
// ErrSignature when verification is enabled and the archive unpacks within
// its limits but its signature is missing, malformed, made with another key
// or scope, or does not cover its files exactly. Invalid options give an
// error wrapping ErrConfig.
func ReadTarball(r io.Reader, opts TarballOptions) (*Snapshot, error) {
	return readTarball(r, true, opts)
}

// ReadTarballBytes is ReadTarball for a bundle already in memory; MaxBytes
// is not applied.
func ReadTarballBytes(raw []byte, opts TarballOptions) (*Snapshot, error) {
	return readTarball(bytes.NewReader(raw), false, opts)
}

// readTarball reads the archive r in one pass. With capped, r is limited to
// MaxBytes and drained to its end, so that MaxBytes covers the whole input.
func readTarball(r io.Reader, capped bool, opts TarballOptions) (*Snapshot, error) {
	lim, err := newLimits(opts.Limits)
	if opts.MaxBytes < 0 {
		err = errors.Join(fmt.Errorf("%w: MaxBytes is negative", ErrConfig), err)
	}
	if err != nil {
		return nil, err
	}
	var compressed *capReader
	if capped {
		maxBytes := cmp.Or(opts.MaxBytes, DefaultMaxBytes)
		compressed = &capReader{r: r, max: maxBytes,
			over: fmt.Errorf("%w: bundle archive is larger than %d bytes", ErrTooLarge, maxBytes)}
		r = compressed
	}
	vcs, err := opts.Verify.configs()
	if err != nil {
		return nil, err
	}
	src, err := newTarSource(r, compressed, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	files, err := collect(src, lim)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if compressed != nil {
		// Past the end of the archive: only trailing bytes, read to
		// enforce MaxBytes on the whole file.
		if _, err := io.Copy(io.Discard, compressed); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRead, err)
		}
	}
	if err := lim.checkParse(files); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	var vc *bundle.VerificationConfig
	if vcs != nil {
		if vc, err = checkSignature(files, vcs); err != nil {
			return nil, fmt.Errorf("%w: %w: %w", ErrRead, ErrSignature, err)
		}
	}
	b, err := parse(files, lim.fileBytes, vc)
	if err != nil {
		return nil, readFailed(files, err)
	}
	return FromBundle(&b, opts.Origin, stamp(opts.Now)), nil
}
