package bundles

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
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
	}
	id := v.KeyID
	if id == "" {
		id = DefaultKeyID
	}
	kc := &bundle.KeyConfig{Key: string(v.Key), Algorithm: alg, Scope: v.Scope}
	return bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: kc}, id, v.Scope,
		append([]string(nil), v.Exclude...)), nil
}

// TarballOptions tunes ReadTarball. The zero value reads an unsigned or
// signed bundle without verification, with the default size limits.
type TarballOptions struct {
	// Origin is copied to the snapshot's Origin.
	Origin string
	// Verify configures signature verification; zero means none.
	Verify VerifyOptions
	// MaxBytes refuses a compressed bundle larger than this; 0 means 64 MiB.
	MaxBytes int64
	// MaxFileBytes refuses any single file (uncompressed) larger than this;
	// 0 means 16 MiB.
	MaxFileBytes int64
	// Now stamps ReadAt; nil means time.Now.
	Now func() time.Time
}

const defaultMaxBundleBytes = 64 << 20

// ReadTarball reads an OPA bundle (.tar.gz: .manifest, data.json/data.yaml,
// .rego modules, optional .signatures.json) from r into a Snapshot with OPA's
// bundle reader (Rego v1). The revision is the manifest's, or a content hash.
//
// Errors wrap ErrRead, and also ErrSignature when verification is enabled and
// the bundle is otherwise readable but its signature is missing or wrong, or
// ErrTooLarge when a limit is exceeded.
func ReadTarball(r io.Reader, opts TarballOptions) (*Snapshot, error) {
	maxBytes := opts.MaxBytes
	if maxBytes <= 0 {
		maxBytes = defaultMaxBundleBytes
	}
	raw, err := io.ReadAll(io.LimitReader(r, maxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	if int64(len(raw)) > maxBytes {
		return nil, fmt.Errorf("%w: %w: over %d bytes", ErrRead, ErrTooLarge, maxBytes)
	}
	return ReadTarballBytes(raw, opts)
}

// ReadTarballBytes is ReadTarball for a bundle already in memory; MaxBytes
// is not applied.
func ReadTarballBytes(raw []byte, opts TarballOptions) (*Snapshot, error) {
	vc, err := opts.Verify.Config()
	if err != nil {
		return nil, err
	}
	b, err := readTarball(raw, opts.MaxFileBytes, vc)
	if err != nil {
		if vc != nil {
			// Tell a bad signature from a bad bundle: does it read unverified?
			if _, err2 := readTarball(raw, opts.MaxFileBytes, nil); err2 == nil {
				return nil, fmt.Errorf("%w: %w: %w", ErrRead, ErrSignature, err)
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrRead, err)
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	return FromBundle(&b, opts.Origin, now()), nil
}

func readTarball(raw []byte, maxFileBytes int64, vc *bundle.VerificationConfig) (bundle.Bundle, error) {
	if maxFileBytes <= 0 {
		maxFileBytes = defaultMaxFileBytes
	}
	loader := bundle.NewTarballLoaderWithBaseURL(bytes.NewReader(raw), "").
		WithSizeLimitBytes(maxFileBytes)
	rd := bundle.NewCustomReader(loader).
		WithRegoVersion(ast.RegoV1).
		WithSizeLimitBytes(maxFileBytes)
	if vc != nil {
		rd = rd.WithBundleVerificationConfig(vc)
	} else {
		rd = rd.WithSkipBundleVerification(true)
	}
	return rd.Read()
}
