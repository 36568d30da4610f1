package token

// Helpers of verify for a token's parts once the signature is checked or
// about to be: the content hash, the typ header, and the claims (decoding,
// NumericDates, required claims, lifetime, and the mapping of validation
// errors to causes).

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

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
