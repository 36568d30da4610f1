package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/internal/printable"
)

// Minimum key strengths, enforced when keys are configured and again
// whenever a key is used, so a remote KeySet cannot introduce weak keys.
// RSA keys are also bounded above, as crypto/tls bounds them: verifying
// with a modulus of n bits costs about n², and the token's size is the only
// other bound on n (a 46,000-bit key, verified against a forged token's
// random signature, took 110 ms).
const (
	minRSABits  = 2048
	maxRSABits  = 8192
	minHMACSize = 32
	// maxRSAExponent bounds the public exponent: 65537 is what keys use,
	// and a larger one (up to 2³¹−1) made one verification with an
	// 8,192-bit key cost 5.5 ms instead of 1.5 ms.
	maxRSAExponent = 65537
)

// maxCandidateKeys bounds the keys one token's signature is checked
// against (a key set may hold several keys with its kid, or a token's kid
// may fall back to every key without one): a key set of thousands would
// otherwise make every forged token as costly as that many verifications.
const maxCandidateKeys = 4

// keyFamily is the kind of key an algorithm needs.
type keyFamily uint8

const (
	familyRSA keyFamily = iota + 1
	familyEC
	familyEd25519
	familyHMAC
)

// algSpec describes one supported JWS algorithm.
type algSpec struct {
	method jwt.SigningMethod
	family keyFamily
	curve  elliptic.Curve // familyEC only
}

// algs is the closed set of supported algorithms. The signing methods are
// golang-jwt's own values, referenced directly rather than through its
// mutable global registry (jwt.GetSigningMethod), so no other package can
// swap an implementation underneath the verifier.
var algs = map[string]algSpec{
	"RS256": {method: jwt.SigningMethodRS256, family: familyRSA},
	"RS384": {method: jwt.SigningMethodRS384, family: familyRSA},
	"RS512": {method: jwt.SigningMethodRS512, family: familyRSA},
	"PS256": {method: jwt.SigningMethodPS256, family: familyRSA},
	"PS384": {method: jwt.SigningMethodPS384, family: familyRSA},
	"PS512": {method: jwt.SigningMethodPS512, family: familyRSA},
	"ES256": {method: jwt.SigningMethodES256, family: familyEC, curve: elliptic.P256()},
	"ES384": {method: jwt.SigningMethodES384, family: familyEC, curve: elliptic.P384()},
	"ES512": {method: jwt.SigningMethodES512, family: familyEC, curve: elliptic.P521()},
	"EdDSA": {method: jwt.SigningMethodEdDSA, family: familyEd25519},
	"HS256": {method: jwt.SigningMethodHS256, family: familyHMAC},
	"HS384": {method: jwt.SigningMethodHS384, family: familyHMAC},
	"HS512": {method: jwt.SigningMethodHS512, family: familyHMAC},
}

// CheckAlgorithm reports why a is not an algorithm an issuer may be
// configured with, or nil: "none" (in any case) is never allowed, and a
// name must be one of the supported JWS algorithms, spelled as RFC 7518
// spells it (ES256, not es256).
func CheckAlgorithm(a string) error {
	if strings.EqualFold(a, "none") {
		return fmt.Errorf("%q is never allowed", a)
	}
	if _, ok := algs[a]; !ok {
		names := slices.Sorted(maps.Keys(algs))
		return fmt.Errorf("%q is not a supported algorithm (one of %s)", a, strings.Join(names, ", "))
	}
	return nil
}

// usable reports whether k may verify a token signed with alg: the key's
// type matches the algorithm's family (and curve), the key is strong
// enough, and its pinned Algorithm, if any, is alg.
func usable(k Key, alg string, spec algSpec) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		return spec.family == familyRSA && pub != nil && pub.N != nil && pub.N.BitLen() >= minRSABits && pub.N.BitLen() <= maxRSABits &&
			pub.E <= maxRSAExponent
	case *ecdsa.PublicKey:
		return spec.family == familyEC && pub != nil && pub.Curve == spec.curve
	case ed25519.PublicKey:
		return spec.family == familyEd25519 && len(pub) == ed25519.PublicKeySize
	case []byte:
		return spec.family == familyHMAC && len(pub) >= minHMACSize
	}
	return false
}

// checkKey reports why k cannot be configured as a verification key, or nil.
func checkKey(k Key) error {
	var family keyFamily
	var curve elliptic.Curve
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		if pub == nil || pub.N == nil {
			return errors.New("empty rsa key")
		}
		if n := pub.N.BitLen(); n < minRSABits || n > maxRSABits {
			return fmt.Errorf("rsa key has %d bits, want %d to %d", n, minRSABits, maxRSABits)
		}
		if pub.E < 3 || pub.E%2 == 0 || pub.E > maxRSAExponent {
			return fmt.Errorf("rsa key has exponent %d, want an odd one from 3 to %d", pub.E, maxRSAExponent)
		}
		family = familyRSA
	case *ecdsa.PublicKey:
		if pub == nil || pub.Curve == nil {
			return errors.New("empty ecdsa key")
		}
		if _, err := pub.Bytes(); err != nil {
			return fmt.Errorf("invalid ecdsa key: %w", err)
		}
		switch pub.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return fmt.Errorf("ecdsa curve %s is not supported (want P-256, P-384 or P-521)", pub.Curve.Params().Name)
		}
		if _, err := pub.ECDH(); err != nil {
			return errors.New("ecdsa key is not a valid curve point")
		}
		family, curve = familyEC, pub.Curve
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return fmt.Errorf("ed25519 key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
		}
		family = familyEd25519
	case []byte:
		if len(pub) < minHMACSize {
			return fmt.Errorf("hmac secret has %d bytes, want at least %d", len(pub), minHMACSize)
		}
		family = familyHMAC
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
		return fmt.Errorf("%T is a private key; configure the public key", pub)
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
	if k.Algorithm != "" {
		spec, ok := algs[k.Algorithm]
		if !ok {
			return fmt.Errorf("unsupported algorithm %q", k.Algorithm)
		}
		if spec.family != family || (family == familyEC && spec.curve != curve) {
			return fmt.Errorf("algorithm %s does not fit the %s key", k.Algorithm, familyName(family, curve))
		}
	}
	return nil
}

func familyName(f keyFamily, curve elliptic.Curve) string {
	switch f {
	case familyRSA:
		return "rsa"
	case familyEC:
		return "ecdsa " + curve.Params().Name
	case familyEd25519:
		return "ed25519"
	case familyHMAC:
		return "hmac"
	}
	return "unknown"
}

// StaticKeys is a fixed, in-memory KeySet. It is safe for concurrent use as
// long as nobody modifies it after handing it to NewVerifier, which checks
// every key (type, RSA >= 2048 bits, HMAC >= 32 bytes, pinned Algorithm fits
// the key). A nil or empty StaticKeys holds no keys and is refused by
// NewVerifier.
type StaticKeys []Key

var _ KeySet = StaticKeys(nil)

// Lookup implements KeySet. With kid empty it returns every key. Otherwise
// it returns the keys whose ID equals kid; when there are none, the keys
// that have no ID at all (a PEM public key or HMAC secret configured without
// a kid matches whatever kid the issuer puts in its tokens). It never fails.
func (s StaticKeys) Lookup(_ context.Context, kid string) ([]Key, error) {
	if kid == "" {
		return s, nil
	}
	if out := s.withID(kid); len(out) > 0 {
		return out, nil
	}
	return s.withID(""), nil
}

// withID returns the keys whose ID is id, without copying for the common
// single match.
func (s StaticKeys) withID(id string) []Key {
	var out []Key
	for i := range s {
		if s[i].ID != id {
			continue
		}
		if out == nil {
			out = s[i : i+1 : i+1]
			continue
		}
		if cap(out) == 1 {
			out = append([]Key{out[0]}, s[i])
			continue
		}
		out = append(out, s[i])
	}
	return out
}

// HMACKey returns a Key holding a copy of secret for HS256, HS384 and HS512.
// NewVerifier refuses secrets shorter than 32 bytes. The Key has no ID and
// no pinned Algorithm; set them on the returned value if needed.
func HMACKey(secret []byte) Key {
	return Key{Public: append([]byte(nil), secret...)}
}

// ParsePublicKeyPEM parses the first PEM block of data as a public key: a
// PKIX "PUBLIC KEY", a PKCS #1 "RSA PUBLIC KEY", or a "CERTIFICATE" whose
// subject key is used (the certificate's validity and chain are not
// checked; pinning the key is the point). Private keys are refused. The
// returned Key has no ID and no pinned Algorithm.
func ParsePublicKeyPEM(data []byte) (Key, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return Key{}, errors.New("token: no pem block found")
	}
	// The first block is the key (a certificate chain may follow it); a
	// private key anywhere in the file is refused, as in the first block.
	for b, more := pem.Decode(rest); b != nil; b, more = pem.Decode(more) {
		if privatePEM(b.Type) {
			return Key{}, fmt.Errorf("token: the file also holds a private key (pem block %q); configure the public key alone", b.Type)
		}
	}
	var pub any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		cert, err = x509.ParseCertificate(block.Bytes)
		if err == nil {
			pub = cert.PublicKey
		}
	default:
		if privatePEM(block.Type) {
			return Key{}, fmt.Errorf("token: pem block %q is a private key; configure the public key", block.Type)
		}
		return Key{}, fmt.Errorf("token: unsupported pem block %q", block.Type)
	}
	if err != nil {
		return Key{}, fmt.Errorf("token: parse %s: %w", block.Type, err)
	}
	k := Key{Public: pub}
	if err := checkKey(k); err != nil {
		return Key{}, fmt.Errorf("token: %s", err)
	}
	return k, nil
}

// privatePEM reports whether a PEM block of type typ holds a private key.
func privatePEM(typ string) bool {
	return strings.HasSuffix(typ, "PRIVATE KEY")
}

// ParseJWKS parses a JSON Web Key Set (RFC 7517) holding public signing
// keys. Each JWK's kid becomes Key.ID and its alg Key.Algorithm (empty when
// the JWK has none). Keys with "use":"enc", with key_ops lacking "verify",
// with an alg that is not a supported signature algorithm, or of an
// unsupported kty or crv are skipped. These are errors: invalid JSON; private key material ("d", "p",
// "q", "dp", "dq", "qi", "oth"); symmetric ("oct") keys, because a key set
// is usually published and anyone who can read an HMAC secret can forge
// tokens; a key that is malformed, too weak, or whose alg does not fit its
// type. Certificates in x5c are not used. A set with no usable key is not an
// error; NewVerifier refuses an empty StaticKeys.
func ParseJWKS(data []byte) ([]Key, error) {
	keys, errs, err := parseJWKS(data)
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// ParseJWKSLenient is ParseJWKS for key sets fetched from a provider at run
// time, where one bad entry must not take the issuer's good keys down with
// it: a key that ParseJWKS would refuse (private key material, a symmetric
// key, a malformed or weak key, an alg that does not fit the key) is left
// out of keys and reported in skipped, one error per key (each naming the
// key's index), for the caller to log. The keys it returns pass exactly the
// same checks as ParseJWKS's. err is set only when data is not a key set at
// all (invalid JSON, no "keys" array); keys and skipped are then nil.
func ParseJWKSLenient(data []byte) (keys []Key, skipped []error, err error) {
	return parseJWKS(data)
}

// parseJWKS parses a key set, collecting the keys that parse and one error
// per key that does not.
func parseJWKS(data []byte) (keys []Key, skipped []error, err error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, nil, fmt.Errorf("token: jwks: %w", err)
	}
	if set.Keys == nil {
		return nil, nil, errors.New(`token: jwks: missing "keys" array`)
	}
	for i, raw := range set.Keys {
		k, ok, err := parseJWK(raw)
		if err != nil {
			skipped = append(skipped, fmt.Errorf("token: jwks: key %d: %w", i, cutError{err}))
			continue
		}
		if ok {
			keys = append(keys, k)
		}
	}
	return keys, skipped, nil
}

// maxKeyErrorBytes bounds the message of the error about one key of a
// key set. The key parser quotes a member it refuses (an unknown use or
// crv), which the key set's publisher can make as long as the set, a
// megabyte, and quoting makes it up to four times longer: a remote key set
// logs these errors at every refresh.
const maxKeyErrorBytes = 256

// cutError is err with its message cut to maxKeyErrorBytes.
type cutError struct{ err error }

func (e cutError) Error() string { return printable.Cut(e.err.Error(), maxKeyErrorBytes) }

func (e cutError) Unwrap() error { return e.err }

// stringMember reads an optional string member of a JSON object decoded
// into a map (rather than a struct, so member names stay case-sensitive):
// "" when it is absent; ok is false when it is present but not a string.
// JWKs and JOSE headers are read with it.
func stringMember(m map[string]any, name string) (s string, ok bool) {
	v, present := m[name]
	if !present {
		return "", true
	}
	s, ok = v.(string)
	return s, ok
}

// jwkString reads one optional string member of a JWK.
func jwkString(m map[string]any, name string) (string, error) {
	if s, ok := stringMember(m, name); ok {
		return s, nil
	}
	return "", fmt.Errorf("%q is not a string", name)
}

// parseJWK parses one JWK. ok is false for a key that is skipped.
func parseJWK(raw json.RawMessage) (k Key, ok bool, err error) {
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return Key{}, false, errors.New("not a json object")
	}
	for _, name := range [...]string{"d", "p", "q", "dp", "dq", "qi", "oth"} {
		if _, ok := m[name]; ok {
			return Key{}, false, fmt.Errorf("holds private key material (%q)", name)
		}
	}
	var kty, use, alg, kid, crv string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"kty", &kty}, {"use", &use}, {"alg", &alg}, {"kid", &kid}, {"crv", &crv}} {
		if *f.dst, err = jwkString(m, f.name); err != nil {
			return Key{}, false, err
		}
	}
	verifies := true
	if ops, present := m["key_ops"]; present {
		list, isList := ops.([]any)
		if !isList {
			return Key{}, false, errors.New(`"key_ops" is not an array`)
		}
		verifies = false
		for _, op := range list {
			if op == "verify" {
				verifies = true
			}
		}
	}
	switch {
	case kty == "oct":
		return Key{}, false, errors.New(`symmetric ("oct") keys do not belong in a key set; configure an hmac secret instead`)
	case use == "enc", !verifies:
		return Key{}, false, nil
	case alg != "" && algs[alg].method == nil:
		return Key{}, false, nil // an encryption or unsupported algorithm
	case kty != "RSA" && kty != "EC" && kty != "OKP":
		return Key{}, false, nil
	case kty == "OKP" && crv != "Ed25519":
		return Key{}, false, nil // X25519 and friends are not signature keys
	}
	var marshal jwkset.JWKMarshal
	if err := json.Unmarshal(raw, &marshal); err != nil {
		return Key{}, false, fmt.Errorf("decode: %w", err)
	}
	// Use the case-sensitive values read above; jwkset's struct decoding
	// matches member names case-insensitively.
	marshal.KTY, marshal.USE, marshal.ALG, marshal.KID, marshal.CRV = jwkset.KTY(kty), jwkset.USE(use), jwkset.ALG(alg), kid, jwkset.CRV(crv)
	marshal.D, marshal.P, marshal.Q, marshal.DP, marshal.DQ, marshal.QI, marshal.OTH, marshal.K = "", "", "", "", "", "", nil, ""
	// Certificates and key_ops are not used; keep jwkset from judging them.
	marshal.X5C, marshal.X5U, marshal.X5T, marshal.X5TS256, marshal.KEYOPS = nil, "", "", "", nil
	if kty == "RSA" {
		// jwkset truncates an oversized exponent silently; refuse it here.
		if e, _ := jwkString(m, "e"); len(e) > 6 { // 6 base64url chars = 4 bytes
			return Key{}, false, errors.New("rsa exponent too large")
		}
	}
	jwk, err := jwkset.NewJWKFromMarshal(marshal, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
	if err != nil {
		return Key{}, false, fmt.Errorf("%s key: %w", kty, err)
	}
	k = Key{ID: kid, Algorithm: alg, Public: jwk.Key()}
	if pub, ok := k.Public.(*rsa.PublicKey); ok && (pub.E > math.MaxInt32 || pub.E < 0) {
		return Key{}, false, errors.New("rsa exponent too large")
	}
	if err := checkKey(k); err != nil {
		return Key{}, false, err
	}
	return k, true, nil
}
