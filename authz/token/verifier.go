package token

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultMaxBytes is the token size limit when Options.MaxBytes is zero.
const DefaultMaxBytes = 8192

// Verifier verifies bearer tokens against a fixed set of trusted issuers.
// It is immutable after NewVerifier and safe for concurrent use by any
// number of goroutines. The zero value is not usable; call NewVerifier.
type Verifier struct {
	issuers  map[string]*issuer
	maxBytes int
}

// issuer is the prepared, immutable form of an Issuer.
type issuer struct {
	name      string
	algs      []string
	keys      KeySet
	validator *jwt.Validator // read-only after construction
	expReq    bool
}

func (is *issuer) allows(alg string) bool {
	for _, a := range is.algs {
		if a == alg {
			return true
		}
	}
	return false
}

// NewVerifier checks opts and returns a Verifier. Every problem found is
// reported, joined with errors.Join, each naming the issuer (by index and
// name) and the field. Config errors: no issuers; an empty or duplicate
// Issuer; no Audiences or an empty audience; no Algorithms, or one that is
// not a supported JWS name ("none" in any case included); a nil Keys; a
// negative Leeway or MaxBytes. When Keys is a StaticKeys every key is
// checked too: it must be non-empty, RSA keys need at least 2048 bits, HMAC
// secrets at least 32 bytes, EC keys P-256/P-384/P-521, and a pinned
// Algorithm must fit the key's type. NewVerifier starts no goroutines.
func NewVerifier(opts Options) (*Verifier, error) {
	var errs []error
	if len(opts.Issuers) == 0 {
		errs = append(errs, errors.New("token: at least one issuer is required"))
	}
	if opts.Leeway < 0 {
		errs = append(errs, fmt.Errorf("token: leeway %s is negative", opts.Leeway))
	}
	if opts.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("token: max bytes %d is negative", opts.MaxBytes))
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{issuers: make(map[string]*issuer, len(opts.Issuers)), maxBytes: opts.MaxBytes}
	if v.maxBytes == 0 {
		v.maxBytes = DefaultMaxBytes
	}
	for i, cfg := range opts.Issuers {
		where := fmt.Sprintf("token: issuer %d (%q)", i, cfg.Issuer)
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("%s: %s", where, fmt.Sprintf(format, args...)))
		}
		switch {
		case cfg.Issuer == "":
			bad("issuer is empty")
		case v.issuers[cfg.Issuer] != nil:
			bad("issuer is configured twice")
		}
		if len(cfg.Audiences) == 0 {
			bad("audiences: at least one is required")
		}
		for j, a := range cfg.Audiences {
			if a == "" {
				bad("audiences[%d] is empty", j)
			}
		}
		if len(cfg.Algorithms) == 0 {
			bad("algorithms: at least one is required")
		}
		for j, a := range cfg.Algorithms {
			switch _, ok := algs[a]; {
			case strings.EqualFold(a, "none"):
				bad("algorithms[%d]: %q is never allowed", j, a)
			case !ok:
				bad("algorithms[%d]: %q is not a supported algorithm", j, a)
			}
		}
		switch ks := cfg.Keys.(type) {
		case nil:
			bad("keys are required")
		case StaticKeys:
			if len(ks) == 0 {
				bad("keys: no keys")
			}
			for j, k := range ks {
				if err := checkKey(k); err != nil {
					bad("keys[%d] (kid %q): %s", j, k.ID, err)
				}
			}
		}
		vopts := []jwt.ParserOption{
			jwt.WithLeeway(opts.Leeway),
			jwt.WithTimeFunc(now),
			jwt.WithIssuedAt(),
			jwt.WithAudience(cfg.Audiences...),
		}
		if !cfg.ExpOptional {
			vopts = append(vopts, jwt.WithExpirationRequired())
		}
		if cfg.Issuer != "" && v.issuers[cfg.Issuer] == nil {
			v.issuers[cfg.Issuer] = &issuer{
				name:      cfg.Issuer,
				algs:      append([]string(nil), cfg.Algorithms...),
				keys:      cfg.Keys,
				validator: jwt.NewValidator(vopts...),
				expReq:    !cfg.ExpOptional,
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return v, nil
}

// verifyError is every error Verify returns: it wraps ErrInvalid and one
// cause sentinel, with a short constant detail that never quotes the token.
type verifyError struct {
	cause  error
	detail string
}

func (e *verifyError) Error() string {
	return ErrInvalid.Error() + ": " + e.cause.Error() + ": " + e.detail
}

func (e *verifyError) Unwrap() []error { return []error{ErrInvalid, e.cause} }

func fail(cause error, detail string) error { return &verifyError{cause: cause, detail: detail} }

// b64 decodes JWS segments: unpadded base64url, canonical (strict) only, so
// one token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// Verify checks raw, a compact JWS JWT, and returns its verified claims.
// It is safe for concurrent use. Any error means deny; it wraps ErrInvalid
// and exactly one cause sentinel (see Reason) and never contains raw.
//
// The order of checks: size (ErrTooLarge, before any decoding); one decode
// of header, claims and signature (ErrMalformed); alg "none" in any case
// or an unsupported alg (ErrDisallowedAlg); iss exactly equal to a
// configured issuer (ErrBadIssuer); alg allowed for that issuer
// (ErrDisallowedAlg); keys from that issuer's KeySet only (ErrKeysUnavailable
// on a lookup error), by kid when present (ErrUnknownKID when none has it),
// keys without an ID standing in for any kid (see StaticKeys.Lookup),
// restricted to keys whose type and pinned Algorithm fit alg
// (ErrDisallowedAlg when none fits); signature (ErrBadSignature); then the
// claims: registered claims of the wrong type or exp/nbf/iat out of range
// (ErrMalformed), exp (ErrMissingClaim when absent and required,
// ErrExpired), nbf and iat (ErrNotYetValid) with leeway, and aud
// (ErrBadAudience). The header
// parameters jku, x5u, jwk and x5c are ignored, and a crit header is
// refused (ErrMalformed) since no extension is understood. ctx is passed
// to the KeySet.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Verified, error) {
	if len(raw) > v.maxBytes {
		return nil, fail(ErrTooLarge, "token exceeds "+strconv.Itoa(v.maxBytes)+" bytes")
	}
	if raw == "" {
		return nil, fail(ErrMalformed, "empty token")
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, fail(ErrMalformed, "want 3 dot-separated segments")
	}
	signingString := raw[:len(h)+1+len(p)]

	hb, err := b64.DecodeString(h)
	if err != nil {
		return nil, fail(ErrMalformed, "header is not base64url")
	}
	var header map[string]any
	if err := json.Unmarshal(hb, &header); err != nil || header == nil {
		return nil, fail(ErrMalformed, "header is not a json object")
	}
	alg, err := headerString(header, "alg")
	switch {
	case err != nil:
		return nil, err
	case alg == "":
		return nil, fail(ErrMalformed, "header has no alg")
	case strings.EqualFold(alg, "none"):
		return nil, fail(ErrDisallowedAlg, "alg none is never accepted")
	}
	spec, ok := algs[alg]
	if !ok {
		return nil, fail(ErrDisallowedAlg, "alg is not supported")
	}
	if _, ok := header["crit"]; ok {
		return nil, fail(ErrMalformed, "crit header is not supported")
	}
	kid, err := headerString(header, "kid")
	if err != nil {
		return nil, err
	}

	pb, err := b64.DecodeString(p)
	if err != nil {
		return nil, fail(ErrMalformed, "payload is not base64url")
	}
	claims, err := decodeClaims(pb)
	if err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(s)
	if err != nil {
		return nil, fail(ErrMalformed, "signature is not base64url")
	}

	iss, ok := claims["iss"].(string)
	if !ok {
		return nil, fail(ErrBadIssuer, "iss is missing or not a string")
	}
	is := v.issuers[iss]
	if is == nil {
		return nil, fail(ErrBadIssuer, "iss is not a configured issuer")
	}
	if !is.allows(alg) {
		return nil, fail(ErrDisallowedAlg, "alg is not allowed for the issuer")
	}

	keys, err := is.keys.Lookup(ctx, kid)
	if err != nil {
		return nil, fail(ErrKeysUnavailable, "key lookup failed: "+err.Error())
	}
	var (
		found, fit bool
		key        *Key
	)
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.ID != kid && k.ID != "" {
			continue // a KeySet that returns another key's kid gets no say
		}
		found = true
		if !usable(*k, alg, spec) {
			continue
		}
		fit = true
		if spec.method.Verify(signingString, sig, k.Public) == nil {
			key = k
			break
		}
	}
	switch {
	case key != nil:
	case !found && kid != "":
		return nil, fail(ErrUnknownKID, "issuer has no key with that kid")
	case !found:
		return nil, fail(ErrUnknownKID, "issuer has no keys")
	case !fit:
		return nil, fail(ErrDisallowedAlg, "alg does not fit the key's type or pinned algorithm")
	default:
		return nil, fail(ErrBadSignature, "signature does not verify")
	}

	if err := checkNumericDates(claims); err != nil {
		return nil, err
	}
	mc := jwt.MapClaims(claims)
	if err := is.validator.Validate(mc); err != nil {
		return nil, claimsError(err, claims, is.expReq)
	}
	sub, err := mc.GetSubject()
	if err != nil {
		return nil, fail(ErrMalformed, "sub is not a string")
	}
	out := &Verified{Issuer: iss, Subject: sub, KeyID: key.ID, Claims: claims}
	if exp, _ := mc.GetExpirationTime(); exp != nil {
		out.ExpiresAt = exp.Time
	}
	return out, nil
}

// headerString reads an optional string header parameter.
func headerString(header map[string]any, name string) (string, error) {
	v, ok := header[name]
	if !ok {
		return "", nil
	}
	s, ok := v.(string)
	if !ok {
		return "", fail(ErrMalformed, name+" header is not a string")
	}
	return s, nil
}

// decodeClaims decodes the payload as one JSON object, numbers as
// json.Number, refusing trailing data.
func decodeClaims(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, fail(ErrMalformed, "payload is not a json object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fail(ErrMalformed, "payload has trailing data")
	}
	return claims, nil
}

// maxNumericDate bounds exp, nbf and iat. golang-jwt converts them to
// int64 seconds without a range check, so an out-of-range or infinite value
// (1e999) would wrap to some arbitrary instant; nbf: 1e999 ("never valid")
// could then pass. Anything beyond this bound is refused as malformed.
const maxNumericDate = 1 << 62

// checkNumericDates refuses exp, nbf and iat values that are numbers but
// cannot be represented as a time. Wrong JSON types are left to the
// validator, which reports them as malformed too.
func checkNumericDates(claims map[string]any) error {
	for _, name := range [...]string{"exp", "nbf", "iat"} {
		n, ok := claims[name].(json.Number)
		if !ok {
			continue
		}
		f, err := n.Float64()
		if err != nil || f >= maxNumericDate || f <= -maxNumericDate {
			return fail(ErrMalformed, name+" is out of range")
		}
	}
	return nil
}

// claimsError maps golang-jwt's joined claim errors to one cause. When
// several claims fail, the first of malformed, missing_claim, bad_audience,
// expired and not_yet_valid wins.
func claimsError(err error, claims map[string]any, expRequired bool) error {
	switch {
	case errors.Is(err, jwt.ErrInvalidType):
		return fail(ErrMalformed, "a registered claim has the wrong type")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		if _, ok := claims["exp"]; !ok && expRequired {
			return fail(ErrMissingClaim, "exp is required")
		}
		// The only other required claim is aud.
		return fail(ErrBadAudience, "aud is missing")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fail(ErrBadAudience, "aud has none of the issuer's audiences")
	case errors.Is(err, jwt.ErrTokenExpired):
		return fail(ErrExpired, "token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return fail(ErrNotYetValid, "nbf is in the future")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return fail(ErrNotYetValid, "iat is in the future")
	}
	return fail(ErrMalformed, "claims are invalid")
}
