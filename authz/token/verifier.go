package token

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
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
	callers  bool // Options.CallerAudiences is not empty
	headers  *headerCache
}

// issuer is the prepared, immutable form of an Issuer.
type issuer struct {
	name  string
	algs  []string
	keys  KeySet
	fresh FreshnessChecker // keys, when it implements FreshnessChecker
	// validators check the registered claims, aud against the issuer's
	// Audiences (subject) or Options.CallerAudiences (caller; nil when
	// there are none). Read-only after construction.
	validators  [2]*jwt.Validator
	expReq      bool
	maxLifetime time.Duration // 0: unbounded
	typ         string        // RequiredType, normalised; "" when none
}

// kind is the kind of token being verified: it decides which audiences
// aud must name.
type kind uint8

const (
	subjectToken kind = iota // Verify: the issuer's Audiences
	callerToken              // VerifyCaller: Options.CallerAudiences
)

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
// negative MaxLifetime, or MaxLifetime with ExpOptional; a RequiredType
// that is not a media type; a negative Leeway or one over MaxLeeway; a
// negative MaxBytes; an empty CallerAudiences entry. When Keys is a
// StaticKeys (or a ReplaceableKeys, for the keys it holds now) they are
// checked too, by CheckKeys. NewVerifier starts no goroutines.
func NewVerifier(opts Options) (*Verifier, error) {
	var errs []error
	if len(opts.Issuers) == 0 {
		errs = append(errs, errors.New("token: at least one issuer is required"))
	}
	if opts.Leeway < 0 || opts.Leeway > MaxLeeway {
		errs = append(errs, fmt.Errorf("token: leeway %s is not between 0 and %s", opts.Leeway, MaxLeeway))
	}
	if opts.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("token: max bytes %d is negative", opts.MaxBytes))
	}
	for j, a := range opts.CallerAudiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("token: caller audiences[%d] is empty", j))
		}
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		issuers:  make(map[string]*issuer, len(opts.Issuers)),
		maxBytes: opts.MaxBytes,
		callers:  len(opts.CallerAudiences) > 0,
		headers:  newHeaderCache(),
	}
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
			if err := CheckAlgorithm(a); err != nil {
				bad("algorithms[%d]: %s", j, err)
			}
		}
		switch ks := cfg.Keys.(type) {
		case nil:
			bad("keys are required")
		case StaticKeys:
			for _, err := range checkKeys(ks, cfg.Algorithms) {
				bad("%s", err)
			}
		case *ReplaceableKeys:
			for _, err := range checkKeys(ks.Keys(), cfg.Algorithms) {
				bad("%s", err)
			}
		}
		switch {
		case cfg.MaxLifetime < 0:
			bad("max lifetime %s is negative", cfg.MaxLifetime)
		case cfg.MaxLifetime > 0 && cfg.ExpOptional:
			bad("max lifetime needs exp: it cannot be combined with exp optional")
		}
		typ, err := normalType(cfg.RequiredType)
		if err != nil {
			bad("required type %q: %s", cfg.RequiredType, err)
		}
		validator := func(audiences []string) *jwt.Validator {
			vopts := []jwt.ParserOption{
				jwt.WithLeeway(opts.Leeway),
				jwt.WithTimeFunc(now),
				jwt.WithIssuedAt(),
				jwt.WithAudience(audiences...),
			}
			if !cfg.ExpOptional {
				vopts = append(vopts, jwt.WithExpirationRequired())
			}
			return jwt.NewValidator(vopts...)
		}
		if cfg.Issuer != "" && v.issuers[cfg.Issuer] == nil {
			is := &issuer{
				name:        cfg.Issuer,
				algs:        append([]string(nil), cfg.Algorithms...),
				keys:        cfg.Keys,
				expReq:      !cfg.ExpOptional,
				maxLifetime: cfg.MaxLifetime,
				typ:         typ,
			}
			is.fresh, _ = cfg.Keys.(FreshnessChecker)
			is.validators[subjectToken] = validator(cfg.Audiences)
			if v.callers {
				is.validators[callerToken] = validator(opts.CallerAudiences)
			}
			v.issuers[cfg.Issuer] = is
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

// b64 decodes JWS segments: unpadded base64url, canonical (strict) only,
// and (compactJWSBytes) nothing the decoder skips, so one token has
// exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

// compactJWSBytes reports whether s holds only the bytes of a compact JWS:
// base64url's alphabet and '.'.
func compactJWSBytes(s string) bool {
	for i := range len(s) {
		switch c := s[i]; {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Verify checks raw, a compact JWS JWT, as a subject token and returns its
// verified claims. It is safe for concurrent use. Any error means deny; it
// wraps ErrInvalid and exactly one cause sentinel (see Reason) and never
// contains raw.
//
// The order of checks: size (ErrTooLarge, before any decoding); one decode
// of header, claims and signature (ErrMalformed, also for an alg, kid or
// typ that is not a string); alg "none" in any case or an unsupported alg
// (ErrDisallowedAlg); iss exactly equal to a configured issuer
// (ErrBadIssuer); alg allowed for that issuer (ErrDisallowedAlg); typ, when
// the issuer has a RequiredType (ErrBadType); keys from that issuer's
// KeySet only (ErrKeysUnavailable on a lookup error), by kid when present
// (ErrUnknownKID when none has it), keys without an ID standing in for any
// kid (see StaticKeys.Lookup); without kid, every key, and the token is
// refused when there are several (ErrMissingKID); restricted to keys whose
// type and pinned Algorithm fit alg (ErrDisallowedAlg when none fits);
// signature (ErrBadSignature); then the claims: registered claims of the
// wrong type or exp/nbf/iat out of range (ErrMalformed), exp, and iat when
// the issuer has a MaxLifetime (ErrMissingClaim when absent and required),
// exp (ErrExpired), nbf and iat (ErrNotYetValid) with leeway, aud
// (ErrBadAudience: it must contain one of the issuer's Audiences), and
// finally exp minus iat against MaxLifetime (ErrLifetime). The header
// parameters jku, x5u, jwk and x5c are ignored, and a crit header is
// refused (ErrMalformed) since no extension is understood. ctx is passed
// to the KeySet.
func (v *Verifier) Verify(ctx context.Context, raw string) (*Verified, error) {
	return v.verify(ctx, raw, subjectToken)
}

// VerifyCaller checks raw as a caller (service) token: every rule of
// Verify applies, in the same order, except that aud must contain one of
// Options.CallerAudiences, and the issuer's Audiences do not count
// (ErrBadAudience). With no CallerAudiences configured it refuses every
// token with ErrNoCallerAudiences. It is safe for concurrent use; its errors are
// Verify's.
func (v *Verifier) VerifyCaller(ctx context.Context, raw string) (*Verified, error) {
	if !v.callers {
		return nil, fail(ErrNoCallerAudiences, "caller tokens are not accepted: no caller audiences are configured")
	}
	return v.verify(ctx, raw, callerToken)
}

// KeysFresh reports whether the keys of issuer (an Issuer.Issuer) may
// still be used, for a cache of verified tokens: a cached verification
// must stop serving when a new one would fail with ErrKeysUnavailable
// because the keys went stale or became unavailable. It returns nil when
// the issuer's KeySet does not implement FreshnessChecker (StaticKeys
// never go stale) or reports its keys fresh; an error wrapping ErrInvalid
// and ErrKeysUnavailable when it does not; one wrapping ErrInvalid and
// ErrBadIssuer for an issuer that is not configured. It does no I/O, does
// not allocate when it returns nil, and is safe for concurrent use. A
// removed key is not its business: a cache learns of that from its
// KeySet (see jwks.Options.OnKeysRemoved).
func (v *Verifier) KeysFresh(issuer string) error {
	is := v.issuers[issuer]
	if is == nil {
		return fail(ErrBadIssuer, "not a configured issuer")
	}
	if is.fresh == nil {
		return nil
	}
	if err := is.fresh.Fresh(); err != nil {
		return fail(ErrKeysUnavailable, "keys are not fresh: "+err.Error())
	}
	return nil
}

// verify is Verify and VerifyCaller: k says which audiences aud must name.
func (v *Verifier) verify(ctx context.Context, raw string, k kind) (*Verified, error) {
	if len(raw) > v.maxBytes {
		return nil, fail(ErrTooLarge, "token exceeds "+strconv.Itoa(v.maxBytes)+" bytes")
	}
	if raw == "" {
		return nil, fail(ErrMalformed, "empty token")
	}
	if !compactJWSBytes(raw) {
		// The base64 decoder skips CR and LF even when strict, so a line
		// break in the signature gave one token many raw forms, each a
		// token-cache miss of its own.
		return nil, fail(ErrMalformed, "a byte outside base64url and '.'")
	}
	h, rest, ok1 := strings.Cut(raw, ".")
	p, s, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.IndexByte(s, '.') >= 0 {
		return nil, fail(ErrMalformed, "want 3 dot-separated segments")
	}
	signingString := raw[:len(h)+1+len(p)]

	hdr, err := v.headers.parse(h)
	if err != nil {
		return nil, err
	}
	alg, spec, kid, typ, hasTyp := hdr.alg, hdr.spec, hdr.kid, hdr.typ, hdr.hasTyp

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
	if is.typ != "" {
		switch {
		case !hasTyp:
			return nil, fail(ErrBadType, "typ is missing and the issuer requires one")
		case !sameType(typ, is.typ):
			return nil, fail(ErrBadType, "typ is not the type the issuer requires")
		}
	}

	keys, err := is.keys.Lookup(ctx, kid)
	if err != nil {
		return nil, fail(ErrKeysUnavailable, "key lookup failed: "+err.Error())
	}
	if kid == "" && len(keys) > 1 {
		return nil, fail(ErrMissingKID, "token has no kid and the issuer has more than one key")
	}
	var (
		found, fit, capped bool
		tried              int
		key                *Key
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
		if tried == maxCandidateKeys {
			capped = true
			break
		}
		tried++
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
	case capped:
		return nil, fail(ErrBadSignature, fmt.Sprintf("signature does not verify with the first %d keys that fit (no more are tried)", maxCandidateKeys))
	default:
		return nil, fail(ErrBadSignature, "signature does not verify")
	}

	if err := checkNumericDates(claims); err != nil {
		return nil, err
	}
	mc := jwt.MapClaims(claims)
	if err := is.validators[k].Validate(mc); err != nil {
		return nil, is.claimsError(err, claims, k)
	}
	if name := is.missingClaim(claims); name != "" {
		return nil, fail(ErrMissingClaim, name+" is required")
	}
	if err := is.checkLifetime(claims); err != nil {
		return nil, err
	}
	sub, err := mc.GetSubject()
	if err != nil {
		return nil, fail(ErrMalformed, "sub is not a string")
	}
	out := &Verified{
		Issuer:  iss,
		Subject: sub,
		KeyID:   key.ID,
		Claims:  claims,
		Content: contentOf(signingString),
	}
	if exp, _ := mc.GetExpirationTime(); exp != nil {
		out.ExpiresAt = exp.Time
	}
	return out, nil
}
