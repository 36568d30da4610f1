package bundles

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/golang-jwt/jwt/v5"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/keys"

	"github.com/verdict-pdp/verdict/authz/token"
)

// DefaultKeyID is the key ID `opa build --signing-key` writes into a bundle's
// signature when no other is given, and the one VerifyOptions uses by default.
const DefaultKeyID = "default"

// VerifyOptions configures bundle signature verification in OPA's format
// (.signatures.json, as written by `opa build --signing-key`). The zero value
// disables verification: bundles are read whether signed or not, and a
// signature that is present is not checked.
//
// With a Key set, a bundle is accepted only if it carries a .signatures.json
// whose JWT verifies with Key (with one of its keys, when it holds several)
// and whose file hashes cover every file in the bundle exactly; an unsigned,
// tampered or wrongly signed bundle is refused with an error wrapping
// ErrSignature.
type VerifyOptions struct {
	// Key is the verification key: PEM-encoded public keys or
	// certificates (RS*, PS*, ES*), or the shared secret (HS*). It is the
	// key's content, never a path. PEM may hold several keys, and a bundle
	// signed with any of them is accepted: to rotate, add the new key, sign
	// with it, then remove the old one. A private key is refused: bundles
	// are verified with the public key alone, and the signing key belongs
	// only where bundles are built.
	Key []byte
	// Algorithm is the signing algorithm; "" means RS256.
	Algorithm string
	// KeyID names the key; "" means DefaultKeyID. The configured keys are
	// used whatever key ID the bundle names.
	KeyID string
	// Scope must equal the signature's scope; "" matches an unscoped bundle.
	Scope string
	// Exclude lists bundle files (glob patterns) left out of verification.
	Exclude []string
}

// Verification is how a source learns the signature verification in
// service, asked before every read of a bundle, so that a rotated key is
// used from the next read on. An error means no key is in service (all
// were revoked): every bundle is refused with it. A nil Verification
// verifies nothing.
type Verification func() (VerifyOptions, error)

// Current returns the verification in service: zero options for a nil v.
func (v Verification) Current() (VerifyOptions, error) {
	if v == nil {
		return VerifyOptions{}, nil
	}
	return v()
}

// Tarball is opts with the verification in service, or an error wrapping
// ErrRead and ErrSignature when there is none to verify with.
func (v Verification) Tarball(opts TarballOptions) (TarballOptions, error) {
	verify, err := v.Current()
	if err != nil {
		return opts, fmt.Errorf("%w: %w: %w", ErrRead, ErrSignature, err)
	}
	opts.Verify = verify
	return opts, nil
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

// Validate reports what is wrong with v (an error wrapping ErrConfig): an
// unsupported algorithm, a key that is not of the algorithm's kind, a
// private key, a shared secret that is PEM or too short. The zero value
// is valid.
func (v VerifyOptions) Validate() error {
	_, err := v.configs()
	return err
}

// Retain returns v with only the keys that data still holds, block for
// block, and whether any is left: what a whole key file that is refused
// still says, that the keys it no longer holds are gone. A file that is
// not whole says nothing, and v is returned as it is: one without a
// complete PEM block or with one cut short (written half-way, say), and
// any shared secret refused (which cannot tell).
func (v VerifyOptions) Retain(data []byte) (VerifyOptions, bool) {
	if strings.HasPrefix(v.Algorithm, "HS") || !wholePEM(data) {
		return v, true
	}
	held := map[string]bool{}
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		held[blk.Type+"\x00"+string(blk.Bytes)] = true
	}
	var kept []byte
	for rest := v.Key; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if held[blk.Type+"\x00"+string(blk.Bytes)] {
			kept = append(kept, pem.EncodeToMemory(blk)...)
		}
	}
	v.Key = kept
	return v, len(kept) > 0
}

// wholePEM reports whether data holds at least one complete PEM block and
// no block begun after the last complete one.
func wholePEM(data []byte) bool {
	blk, rest := pem.Decode(data)
	if blk == nil {
		return false
	}
	for blk != nil {
		blk, rest = pem.Decode(rest)
	}
	return !bytes.Contains(rest, []byte("-----BEGIN"))
}

// configs returns OPA's verification config for each of v's keys, fresh on
// every call, or nil when verification is disabled.
func (v VerifyOptions) configs() ([]*bundle.VerificationConfig, error) {
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
	var keyPEMs []string
	if alg[0] == 'H' {
		// A shared secret must be secret: a public key (PEM) as an HMAC
		// key lets anyone who has it sign bundles, and a short one can be
		// guessed. RFC 7518 §3.2: at least the hash's size.
		if bytes.Contains(v.Key, []byte("-----BEGIN")) {
			return nil, fmt.Errorf("%w: the verification key for %s is PEM: a public key is no shared secret (use its algorithm, RS256 or ES256, say)", ErrConfig, alg)
		}
		if need := hmacKeyBytes(alg); len(v.Key) < need {
			return nil, fmt.Errorf("%w: the verification key for %s has %d bytes, want at least %d", ErrConfig, alg, len(v.Key), need)
		}
		keyPEMs = []string{string(v.Key)}
	} else {
		var err error
		if keyPEMs, err = publicKeys(v.Key, alg); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	id := v.KeyID
	if id == "" {
		id = DefaultKeyID
	}
	vcs := make([]*bundle.VerificationConfig, len(keyPEMs))
	for i, key := range keyPEMs {
		kc := &bundle.KeyConfig{Key: key, Algorithm: alg, Scope: v.Scope}
		vcs[i] = bundle.NewVerificationConfig(map[string]*bundle.KeyConfig{id: kc}, id, v.Scope,
			append([]string(nil), v.Exclude...))
	}
	return vcs, nil
}

// publicKeys splits data into its PEM blocks, each a public key or a
// certificate of alg's kind that token.ParsePublicKeyPEM accepts (RSA of
// 2,048 to 8,192 bits; ECDSA on P-256, P-384 or P-521), and returns each
// block encoded on its own.
func publicKeys(data []byte, alg string) ([]string, error) {
	var out []string
	for rest := data; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		n := len(out) + 1
		if strings.Contains(blk.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("verification key %d is a private key (%s): give its public key (openssl pkey -pubout); the signing key belongs only where bundles are built", n, blk.Type)
		}
		// One block at a time, parsed and checked as a token key is.
		key, err := token.ParsePublicKeyPEM(pem.EncodeToMemory(blk))
		if err != nil {
			return nil, fmt.Errorf("verification key %d: %w", n, err)
		}
		if err := keyFits(key.Public, alg); err != nil {
			return nil, fmt.Errorf("verification key %d: %w", n, err)
		}
		out = append(out, string(pem.EncodeToMemory(blk)))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("verification key for %s is not PEM", alg)
	}
	if !wholePEM(data) {
		return nil, fmt.Errorf("verification key %d is cut short (a file written half-way?)", len(out)+1)
	}
	return out, nil
}

// keyFits reports whether pub can verify alg's signatures: an RSA key for
// RS* and PS*, an ECDSA key on the algorithm's curve for ES*.
func keyFits(pub any, alg string) error {
	curves := map[string]elliptic.Curve{"ES256": elliptic.P256(), "ES384": elliptic.P384(), "ES512": elliptic.P521()}
	need := "an RSA key"
	if c := curves[alg]; c != nil {
		need = "an ECDSA key on " + c.Params().Name
	}
	var have string
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if alg[0] == 'R' || alg[0] == 'P' {
			return nil
		}
		have = "an RSA key"
	case *ecdsa.PublicKey:
		if k.Curve == curves[alg] {
			return nil
		}
		have = "an ECDSA key on " + k.Curve.Params().Name
	default:
		have = fmt.Sprintf("a %T key", pub)
	}
	return fmt.Errorf("%s cannot verify %s (it needs %s)", have, alg, need)
}

// checkSignature verifies unpacked files against their .signatures.json
// with OPA's public verification API, applying the rules of OPA's bundle
// reader: exactly one signatures file, a JWT that verifies with the key and
// scope of one of vcs (tried in order), a matching hash for every file not
// excluded, and no signed file missing. It returns the config whose key
// verified the JWT, for OPA's reader to check again while it parses.
// The JWT's signature is checked (signedWith) before its payload is
// decoded. Before the file hashes are known good, this parses every
// structured file they cover (data.json, data.yaml,
// .manifest): OPA hashes a structured file's parsed value, not its bytes,
// so VerifyBundleFile parses the file before it compares the digest.
// Callers bound that cost first with checkParse. Modules are hashed as
// bytes and not parsed. This pass exists to refuse before modules are
// parsed and to tell a signature failure from a broken bundle without
// reading the bundle twice.
func checkSignature(files []entry, vcs []*bundle.VerificationConfig) (*bundle.VerificationConfig, error) {
	var sigs []entry
	for _, f := range files {
		if bundle.IsSignaturesFile(f.path) {
			sigs = append(sigs, f)
		}
	}
	if len(sigs) > 1 {
		return nil, fmt.Errorf("bundle has %d signatures files", len(sigs))
	}
	var sc bundle.SignaturesConfig
	if len(sigs) == 1 {
		// Unmarshal, not a Decoder: a Decoder copies the file into a
		// buffer it grows, four times the file's size in all.
		if err := json.Unmarshal(sigs[0].data, &sc); err != nil {
			return nil, fmt.Errorf("%s: %w", sigs[0].path, err)
		}
	}
	if sc.Signatures == nil && sc.Plugin == "" {
		return nil, errors.New("bundle has no .signatures.json")
	}
	var (
		vc     *bundle.VerificationConfig
		signed map[string]bundle.FileInfo
		err    error
	)
	for i, c := range vcs {
		if err = signedWith(sc, c); err != nil {
			// OPA's verifier decodes and parses the JWT's payload before it
			// checks the signature: a forged one of millions of tiny file
			// entries cost hundreds of megabytes. Only a payload the key
			// signed is parsed.
		} else if signed, err = bundle.VerifyBundleSignature(sc, c); err == nil {
			vc = c
			break
		}
		if len(vcs) > 1 && i == len(vcs)-1 {
			err = fmt.Errorf("no key of %d verifies it: %w", len(vcs), err)
		}
	}
	if vc == nil {
		return nil, err
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
			return nil, err
		}
	}
	if len(signed) > 0 {
		missing := make([]string, 0, len(signed))
		for p := range signed {
			missing = append(missing, p)
		}
		sort.Strings(missing)
		return nil, fmt.Errorf("signed files missing from the bundle: %q", missing)
	}
	return vc, nil
}

// signedWith checks that sc's JWT carries a signature of vc's key over
// its header and payload, before anything decodes the payload: OPA's
// verifier makes the same check only after it has parsed the payload. Any
// other shape of sc (no JWT or several, a verifier plugin) is left to OPA's
// verifier to refuse, which it does before reading a payload.
func signedWith(sc bundle.SignaturesConfig, vc *bundle.VerificationConfig) error {
	kc := vc.PublicKeys[vc.KeyID]
	if sc.Plugin != "" || len(sc.Signatures) != 1 || kc == nil {
		return nil
	}
	jws := sc.Signatures[0]
	cut := strings.LastIndexByte(jws, '.')
	if cut < 0 || strings.Count(jws[:cut], ".") != 1 {
		return errors.New("the signature is not a compact JWS (header.payload.signature)")
	}
	sig, err := base64.RawURLEncoding.DecodeString(jws[cut+1:])
	if err != nil {
		return fmt.Errorf("the JWS signature is not base64url: %w", err)
	}
	method := jwt.GetSigningMethod(kc.Algorithm)
	if method == nil {
		return fmt.Errorf("unsupported signing algorithm %q", kc.Algorithm)
	}
	var key any = []byte(kc.Key)
	if !strings.HasPrefix(kc.Algorithm, "HS") {
		k, err := token.ParsePublicKeyPEM([]byte(kc.Key))
		if err != nil {
			return err
		}
		key = k.Public
	}
	if err := method.Verify(jws[:cut], sig, key); err != nil {
		return fmt.Errorf("failed to verify JWT signature: %w", err)
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
