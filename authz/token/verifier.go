package token

import (
	"bytes"
	"context"
	"crypto/sha256"
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
	callers  bool // Options.CallerAudiences is not empty
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
// that is not a media type; a negative Leeway or MaxBytes; an empty
// CallerAudiences entry. When Keys is a StaticKeys every key is
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

// b64 decodes JWS segments: unpadded base64url, canonical (strict) only, so
// one token has exactly one encoding.
var b64 = base64.RawURLEncoding.Strict()

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
// token with ErrBadAudience. It is safe for concurrent use; its errors are
// Verify's.
func (v *Verifier) VerifyCaller(ctx context.Context, raw string) (*Verified, error) {
	if !v.callers {
		return nil, fail(ErrBadAudience, "caller tokens are not accepted: no caller audiences are configured")
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
	typ, err := headerString(header, "typ")
	if err != nil {
		return nil, err
	}
	_, hasTyp := header["typ"]

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

// contentOf returns the SHA-256 of a token's signing input, for
// Verified.Content. It is sha256.Sum256([]byte(s)) without the heap copy
// of s that the conversion costs (the digest and the chunk buffer stay on
// the stack).
func contentOf(s string) (sum [sha256.Size]byte) {
	h := sha256.New()
	var chunk [256]byte
	for len(s) > 0 {
		n := copy(chunk[:], s)
		h.Write(chunk[:n])
		s = s[n:]
	}
	h.Sum(sum[:0])
	return sum
}

// applicationPrefix is implied before a media type without "/" (RFC 7515
// §4.1.9).
const applicationPrefix = "application/"

// normalType checks an Issuer.RequiredType and returns it in the form
// sameType compares with: lowercase, with "application/" prepended when it
// has no "/". The empty type stays empty.
func normalType(t string) (string, error) {
	if t == "" {
		return "", nil
	}
	for i := 0; i < len(t); i++ {
		if c := t[i]; c <= ' ' || c >= 0x7f {
			return "", errors.New("has spaces, control characters or non-ASCII characters")
		}
	}
	t = strings.ToLower(t)
	if !strings.Contains(t, "/") {
		t = applicationPrefix + t
	}
	typ, sub, _ := strings.Cut(t, "/")
	if typ == "" || sub == "" || strings.Contains(sub, "/") {
		return "", errors.New(`is not a media type ("at+jwt" or "application/at+jwt")`)
	}
	return t, nil
}

// sameType reports whether the header typ got names the media type want
// (from normalType): ASCII case-insensitively, "application/" implied when
// got has no "/". It does not allocate.
func sameType(got, want string) bool {
	if !strings.Contains(got, "/") {
		rest, ok := strings.CutPrefix(want, applicationPrefix)
		return ok && lowerEqual(got, rest)
	}
	return lowerEqual(got, want)
}

// lowerEqual reports whether s, with ASCII letters lowered, equals lower.
// Unlike strings.EqualFold it folds ASCII only, as media types are
// compared: "\u017f" (long s) and "\u212a" (Kelvin) do not match s and k.
func lowerEqual(s, lower string) bool {
	if len(s) != len(lower) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
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

// missingClaim returns the name of a claim the issuer requires that claims
// lacks, or "": exp unless ExpOptional, iat with a MaxLifetime. (aud is
// required too, but its absence is a bad audience.)
func (is *issuer) missingClaim(claims map[string]any) string {
	if _, ok := claims["exp"]; !ok && is.expReq {
		return "exp"
	}
	if _, ok := claims["iat"]; !ok && is.maxLifetime > 0 {
		return "iat"
	}
	return ""
}

// checkLifetime refuses a token whose exp minus iat exceeds the issuer's
// MaxLifetime. It runs after the validator, so both are present, are
// numbers and are in range. The difference is taken in float64 seconds,
// which cannot overflow.
func (is *issuer) checkLifetime(claims map[string]any) error {
	if is.maxLifetime <= 0 {
		return nil
	}
	exp, err1 := numericDate(claims, "exp")
	iat, err2 := numericDate(claims, "iat")
	if err1 != nil || err2 != nil {
		return fail(ErrMalformed, "exp or iat is not a number")
	}
	if exp-iat > is.maxLifetime.Seconds() {
		return fail(ErrLifetime, "exp is further after iat than the issuer's max lifetime")
	}
	return nil
}

// numericDate returns a claim decoded as json.Number, in seconds.
func numericDate(claims map[string]any, name string) (float64, error) {
	n, ok := claims[name].(json.Number)
	if !ok {
		return 0, errors.New("not a number")
	}
	return n.Float64()
}

// claimsError maps golang-jwt's joined claim errors to one cause. When
// several claims fail, the first of malformed, missing_claim, bad_audience,
// expired and not_yet_valid wins. k names the audiences in the detail.
func (is *issuer) claimsError(err error, claims map[string]any, k kind) error {
	if errors.Is(err, jwt.ErrInvalidType) {
		return fail(ErrMalformed, "a registered claim has the wrong type")
	}
	if name := is.missingClaim(claims); name != "" {
		return fail(ErrMissingClaim, name+" is required")
	}
	switch {
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// exp is handled above; the only other required claim is aud.
		return fail(ErrBadAudience, "aud is missing")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		if k == callerToken {
			return fail(ErrBadAudience, "aud has none of the caller audiences")
		}
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
