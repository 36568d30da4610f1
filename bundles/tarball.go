package bundles

import (
	"bytes"
	"cmp"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"
)

// ErrSignature is wrapped by every error that refuses a bundle because its
// signature is missing, does not verify, or does not cover its files.
var ErrSignature = errors.New("bundles: signature verification failed")

// ErrTooLarge is wrapped when a bundle or one of its files exceeds a limit.
var ErrTooLarge = errors.New("bundles: bundle too large")

// ErrConfig is wrapped by errors about invalid options.
var ErrConfig = errors.New("bundles: invalid options")

// DefaultKeyID is the key ID `opa build --signing-key` writes into a bundle's
// signature when no other is given, and the one VerifyOptions uses by default.
const DefaultKeyID = "default"

// VerifyOptions configures bundle signature verification in OPA's format
// (.signatures.json, as written by `opa build --signing-key`). The zero value
// disables verification: bundles are read whether signed or not, and a
// signature that is present is not checked.
//
// With a Key set, a bundle is accepted only if it carries a .signatures.json
// whose JWT verifies with Key and whose file hashes cover every file in the
// bundle exactly; an unsigned, tampered or wrongly signed bundle is refused
// with an error wrapping ErrSignature.
type VerifyOptions struct {
	// Key is the verification key: a PEM-encoded public key (RS*, PS*, ES*)
	// or the shared secret (HS*). It is the key's content, never a path.
	Key []byte
	// Algorithm is the signing algorithm; "" means RS256.
	Algorithm string
	// KeyID names the key; "" means DefaultKeyID. The configured key is used
	// whatever key ID the bundle names.
	KeyID string
	// Scope must equal the signature's scope; "" matches an unscoped bundle.
	Scope string
	// Exclude lists bundle files (glob patterns) left out of verification.
	Exclude []string
}

// hmacKeyBytes is the least size of a shared secret for alg: the size of
// its hash (RFC 7518 §3.2).
func hmacKeyBytes(alg string) int {
	switch alg {
	case "HS384":
		return 48
	case "HS512":
		return 64
	}
	return 32
}

// Enabled reports whether signature verification is configured.
func (v VerifyOptions) Enabled() bool { return len(v.Key) > 0 }

// Config validates v and returns OPA's verification config for it, or nil
// when verification is disabled. The result is fresh on every call.
func (v VerifyOptions) Config() (*bundle.VerificationConfig, error) {
	if !v.Enabled() {
		return nil, nil
	}
	alg := v.Algorithm
	if alg == "" {
		alg = "RS256"
	}
	if !keys.IsSupportedAlgorithm(alg) {
		return nil, fmt.Errorf("%w: unsupported signing algorithm %q", ErrConfig, alg)
	}
	if alg[0] != 'H' {
		if blk, _ := pem.Decode(v.Key); blk == nil {
			return nil, fmt.Errorf("%w: verification key for %s is not PEM", ErrConfig, alg)
		}
	} else {
		// A shared secret must be secret: a public key (PEM) as an HMAC
		// key lets anyone who has it sign bundles, and a short one can be
		// guessed. RFC 7518 §3.2: at least the hash's size.
		if bytes.Contains(v.Key, []byte("-----BEGIN")) {
			return nil, fmt.Errorf("%w: the verification key for %s is PEM: a public key is no shared secret (use its algorithm, RS256 or ES256, say)", ErrConfig, alg)
		}
		if need := hmacKeyBytes(alg); len(v.Key) < need {
			return nil, fmt.Errorf("%w: the verification key for %s has %d bytes, want at least %d", ErrConfig, alg, len(v.Key), need)
		}
	}
	id := v.KeyID
	if id == "" {
		id = DefaultKeyID
	}
	kc := &bundle.KeyConfig{Key: string(v.Key), Algorithm: alg, Scope: v.Scope}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: kc}, id, v.Scope,
		append([]string(nil), v.Exclude...)), nil
}

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
// Errors wrap ErrRead, and also ErrTooLarge when a limit is exceeded, or
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
	vc, err := opts.Verify.Config()
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
	if vc != nil {
		if err := checkSignature(files, vc); err != nil {
			return nil, fmt.Errorf("%w: %w: %w", ErrRead, ErrSignature, err)
		}
	}
	b, err := parse(files, lim.fileBytes, vc)
	if err != nil {
		return nil, readFailed(err)
	}
	return FromBundle(&b, opts.Origin, stamp(opts.Now)), nil
}

// checkSignature verifies unpacked files against their .signatures.json
// with OPA's public verification API, applying the rules of OPA's bundle
// reader: exactly one signatures file, a JWT that verifies with vc's key
// and scope, a matching hash for every file not excluded, and no signed file
// missing. Before the signature is known good, this parses the signatures
// file and its JWT, and also every structured file it covers (data.json,
// data.yaml, .manifest): OPA hashes a structured file's parsed value, not
// its bytes, so VerifyBundleFile parses the file before it compares the
// digest. Callers bound that cost first with checkParse. Modules are
// hashed as bytes and not parsed. OPA's reader checks all of this again
// while it parses; this pass exists to refuse before modules are parsed
// and to tell a signature failure from a broken bundle without reading the
// bundle twice.
func checkSignature(files []entry, vc *bundle.VerificationConfig) error {
	var sigs []entry
	for _, f := range files {
		if bundle.IsSignaturesFile(f.path) {
			sigs = append(sigs, f)
		}
	}
	if len(sigs) > 1 {
		return fmt.Errorf("bundle has %d signatures files", len(sigs))
	}
	var sc bundle.SignaturesConfig
	if len(sigs) == 1 {
		if err := json.NewDecoder(bytes.NewReader(sigs[0].data)).Decode(&sc); err != nil {
			return fmt.Errorf("%s: %w", sigs[0].path, err)
		}
	}
	if sc.Signatures == nil && sc.Plugin == "" {
		return errors.New("bundle has no .signatures.json")
	}
	signed, err := bundle.VerifyBundleSignature(sc, vc)
	if err != nil {
		return err
	}
	for _, f := range files {
		if bundle.IsSignaturesFile(f.path) {
			continue
		}
		p := strings.TrimPrefix(f.path, "/")
		if excluded(p, vc.Exclude) {
			delete(signed, p)
			continue
		}
		if err := bundle.VerifyBundleFile(p, *bytes.NewBuffer(f.data), signed); err != nil {
			return err
		}
	}
	if len(signed) > 0 {
		missing := make([]string, 0, len(signed))
		for p := range signed {
			missing = append(missing, p)
		}
		sort.Strings(missing)
		return fmt.Errorf("signed files missing from the bundle: %q", missing)
	}
	return nil
}

// excluded reports whether path matches one of the glob patterns, as OPA's
// reader matches VerificationConfig.Exclude.
func excluded(path string, patterns []string) bool {
	for _, pat := range patterns {
		if ok, _ := filepath.Match(pat, path); ok {
			return true
		}
	}
	return false
}
