// Package token verifies bearer tokens (compact JWS JWTs) under the rules of
// RFC 8725 and Verdict's design: algorithms allow-listed per issuer and bound
// to the key's type, "none" always refused, iss matched exactly against a
// configured issuer, aud required to contain a configured audience, exp
// required by default, nbf/iat checked with leeway, keys chosen by kid from
// that issuer's keys only (a token without kid is refused when the issuer
// has more than one key), header-supplied keys (jku, x5u, jwk, x5c) never
// trusted, and tokens over the size limit refused before any parsing.
//
// An issuer can ask for more (Issuer.MaxLifetime, Issuer.RequiredType): a
// bounded lifetime (exp minus iat, with both claims then required), and
// explicit typing (the JOSE header typ, such as "at+jwt" for OAuth access
// tokens, RFC 9068; RFC 8725 §3.11).
//
// A Verifier is built once from Options with NewVerifier and then shared by
// every request goroutine; Verify decodes a token exactly once, picks the
// issuer from its iss claim, picks candidate keys from that issuer's KeySet
// only, checks the signature with golang-jwt's signing methods, and finally
// validates the registered claims with golang-jwt's Validator.
//
// Subject tokens and caller (service) tokens are different kinds of token:
// Verify wants a subject token, whose aud names one of its issuer's
// Audiences; VerifyCaller wants a caller token, whose aud names one of
// Options.CallerAudiences instead. Every other rule is the same, on the
// same code path.
//
// Verified.Content identifies a token's signed content (the SHA-256 of its
// header and payload), which stays the same when its signature is
// re-encoded; compare it, not the raw strings, to tell tokens apart.
//
// Keys come from a KeySet, so a remote JWKS source can plug in without
// touching the rules. StaticKeys is the in-memory KeySet; ParseJWKS,
// ParsePublicKeyPEM and HMACKey build its keys from configuration. A KeySet
// whose keys can go stale also implements FreshnessChecker, and
// Verifier.KeysFresh asks it, so that a cache of verified tokens stops
// serving them when new ones would be refused.
//
// Every failure wraps ErrInvalid and exactly one cause sentinel
// (ErrExpired, ErrBadSignature, ...); Reason names the cause for a deny,
// from the closed set that Reasons lists. Error messages never contain the
// token itself. The Raw type carries a token through code that might log
// it: it formats and logs redacted.
package token

import (
	"context"
	"crypto"
	"errors"
	"time"
)

// ErrInvalid is wrapped by every verification failure.
var ErrInvalid = errors.New("token invalid")

// Cause sentinels. Each verification error wraps ErrInvalid and exactly one
// of these; Reason maps them to the short names used in deny reasons (the
// sentinel's text).
var (
	// ErrTooLarge: the token is longer than Options.MaxBytes. It was not parsed.
	ErrTooLarge = errors.New("too_large")
	// ErrMalformed: not a compact JWS (three canonical base64url segments,
	// JSON object header and payload, string alg, kid and typ, no crit), or a
	// registered claim of the wrong JSON type or out of range.
	ErrMalformed = errors.New("malformed")
	// ErrDisallowedAlg: alg is "none" (in any case), unknown, not allowed for
	// the issuer, or not allowed for any of the keys that could verify it.
	ErrDisallowedAlg = errors.New("disallowed_alg")
	// ErrUnknownKID: the issuer has no key with the token's kid (or no keys).
	ErrUnknownKID = errors.New("unknown_kid")
	// ErrBadSignature: no candidate key verifies the signature.
	ErrBadSignature = errors.New("bad_signature")
	// ErrExpired: exp is in the past (beyond the leeway).
	ErrExpired = errors.New("expired")
	// ErrNotYetValid: nbf or iat is in the future (beyond the leeway).
	ErrNotYetValid = errors.New("not_yet_valid")
	// ErrBadIssuer: iss is absent, not a string, or matches no configured
	// issuer exactly.
	ErrBadIssuer = errors.New("bad_issuer")
	// ErrBadAudience: aud is absent or contains none of the accepted
	// audiences (the issuer's for Verify, Options.CallerAudiences for
	// VerifyCaller), or VerifyCaller was called with no caller audiences
	// configured.
	ErrBadAudience = errors.New("bad_audience")
	// ErrMissingClaim: a required claim is absent: exp, unless
	// Issuer.ExpOptional; iat, when Issuer.MaxLifetime is set.
	ErrMissingClaim = errors.New("missing_claim")
	// ErrKeysUnavailable: the issuer's KeySet returned an error, or (from
	// Verifier.KeysFresh) reports that its keys are not fresh.
	ErrKeysUnavailable = errors.New("keys_unavailable")
	// ErrLifetime: exp minus iat exceeds the issuer's MaxLifetime.
	ErrLifetime = errors.New("lifetime_too_long")
	// ErrBadType: the issuer has a RequiredType and the header typ is
	// absent or names another type.
	ErrBadType = errors.New("bad_type")
	// ErrMissingKID: the token has no kid and the issuer has more than one
	// key, so which key signed it is ambiguous.
	ErrMissingKID = errors.New("missing_kid")
	// ErrNoCallerAudiences: a caller token was given, and no caller
	// audiences are configured (Options.CallerAudiences), so none is
	// accepted.
	ErrNoCallerAudiences = errors.New("no_caller_audiences")
)

// causes lists the cause sentinels in the order Reason tests them.
var causes = [...]error{
	ErrTooLarge, ErrMalformed, ErrDisallowedAlg, ErrUnknownKID, ErrBadSignature,
	ErrExpired, ErrNotYetValid, ErrBadIssuer, ErrBadAudience, ErrMissingClaim,
	ErrKeysUnavailable, ErrLifetime, ErrBadType, ErrMissingKID, ErrNoCallerAudiences,
}

// reasonInvalid is Reason's name for an error that is not a verification
// error with a cause.
const reasonInvalid = "invalid"

// Reason returns the short name of a verification error's cause
// ("expired", "bad_signature", ...), suitable for a deny reason such as
// "token: expired" or a metric label (the set of names is closed). It
// returns "invalid" for any other non-nil error and "" for nil.
func Reason(err error) string {
	if err == nil {
		return ""
	}
	if errors.Is(err, ErrInvalid) {
		for _, c := range causes {
			if errors.Is(err, c) {
				return c.Error()
			}
		}
	}
	return reasonInvalid
}

// Reasons returns every name Reason can return for a non-nil error: each
// cause's name, then "invalid". It is the closed set of deny reasons and
// metric labels, so a metric can be created for each up front. The slice
// is new on every call; the caller may modify it.
func Reasons() []string {
	out := make([]string, 0, len(causes)+1)
	for _, c := range causes {
		out = append(out, c.Error())
	}
	return append(out, reasonInvalid)
}

// Key is one verification key. A Key is a plain value; once handed to a
// KeySet it must not be modified.
type Key struct {
	// ID is the key's kid; empty when the key has none.
	ID string
	// Algorithm pins the key to one JWS algorithm ("RS256"); empty binds it
	// to every algorithm of its type that the issuer allows.
	Algorithm string
	// Public is *rsa.PublicKey (at least 2048 bits), *ecdsa.PublicKey
	// (P-256, P-384 or P-521), ed25519.PublicKey, or a []byte HMAC secret
	// (at least 32 bytes). Private keys are refused. The type decides which
	// algorithms the key can ever verify: RS*/PS* need RSA, ES256/ES384/ES512
	// need P-256/P-384/P-521, EdDSA needs Ed25519 and HS* need a []byte, so
	// an RSA public key can never be used as an HMAC secret.
	Public crypto.PublicKey
}

// KeySet finds an issuer's verification keys. Implementations must be safe
// for concurrent use. A remote implementation should cache, refresh in the
// background, refresh (rate-limited) on an unknown kid, keep its last
// good keys while the key server is down, and implement FreshnessChecker.
type KeySet interface {
	// Lookup returns the keys whose ID equals kid; with kid empty, every key.
	// An empty result with a nil error means no such key. A non-nil error
	// makes verification fail with ErrKeysUnavailable. The caller does not
	// modify the returned slice.
	Lookup(ctx context.Context, kid string) ([]Key, error)
}

// FreshnessChecker is implemented by a KeySet whose keys can go stale or
// become unavailable, such as a remote key set kept while its key server
// is down. Fresh reports it: nil means the keys may be used; an error says
// why not. Its Lookup should fail in the same cases, so that what Fresh
// says about cached verifications is what Lookup says about new ones.
// Fresh must be cheap, since a cache may ask for every cached token: no
// I/O, no fetch, no waiting, and no allocation when it returns nil. It
// must be safe for concurrent use. A KeySet that does not implement it,
// such as StaticKeys, never goes stale.
type FreshnessChecker interface {
	Fresh() error
}

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer must equal the token's iss claim exactly (no normalisation:
	// case, trailing slashes and prefixes all matter). Required, unique.
	Issuer string
	// Audiences: the token's aud must contain at least one of them. Required.
	Audiences []string
	// Algorithms allowed for this issuer, by their exact JWS names: RS256,
	// RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA, HS256,
	// HS384, HS512. Required; "none" and anything else is a config error.
	Algorithms []string
	// Keys holds the issuer's verification keys; only they are ever tried
	// for tokens whose iss is Issuer. Required.
	Keys KeySet
	// ExpOptional accepts tokens without exp. The default requires it.
	ExpOptional bool
	// MaxLifetime, when positive, bounds how long the issuer's tokens may
	// live: a token whose exp minus iat exceeds it is refused
	// (ErrLifetime), at the limit it is accepted, and iat and exp are then
	// both required (ErrMissingClaim). The claims are compared with each
	// other, exactly, without leeway (both come from the issuer's clock).
	// Zero means no bound. Negative, or positive together with
	// ExpOptional, is a config error.
	MaxLifetime time.Duration
	// RequiredType, when set, is the media type that the JOSE header typ
	// must name, such as "at+jwt" for OAuth 2.0 access tokens (RFC 9068).
	// Types are compared as RFC 7515 §4.1.9 says: case-insensitively, with
	// "application/" implied for a value that has no "/", so "at+jwt",
	// "AT+JWT" and "application/at+jwt" all name the same type. A token
	// with no typ or another one is refused (ErrBadType). Empty means typ
	// is not checked (though a typ that is not a string is always
	// malformed). A value with spaces or control characters, or an empty
	// half around its "/", is a config error.
	RequiredType string
}

// MaxLeeway bounds Options.Leeway: a clock skew of minutes is already
// generous, and a larger one keeps accepting tokens long expired.
const MaxLeeway = 5 * time.Minute

// Options configures a Verifier. The zero value of each field means its default.
type Options struct {
	// Issuers are the trusted issuers. At least one is required.
	Issuers []Issuer
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 0;
	// negative, or more than MaxLeeway, is a config error.
	Leeway time.Duration
	// MaxBytes refuses longer tokens before parsing. Default 8192; negative
	// is a config error.
	MaxBytes int
	// CallerAudiences are the audiences of caller (service) tokens: the
	// aud of a token given to Verifier.VerifyCaller must contain one of
	// them, and its issuer's Audiences do not count. Every other rule of
	// the token's issuer applies. Empty means VerifyCaller refuses every
	// token; an empty entry is a config error. An audience that is also an
	// issuer's audience makes that issuer's tokens acceptable as both
	// kinds, which is usually a mistake.
	CallerAudiences []string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verified is a successfully verified token. It is owned by the caller of
// Verify or VerifyCaller: nothing else holds a reference to it.
type Verified struct {
	// Issuer is the iss claim, equal to the matching Issuer.Issuer.
	Issuer string
	// Subject is the sub claim; empty when absent.
	Subject string
	// KeyID is the ID of the key that verified the token ("" when it has none).
	KeyID string
	// ExpiresAt is the exp claim; zero when absent (only with ExpOptional).
	ExpiresAt time.Time
	// Claims are all the token's claims, numbers as json.Number.
	Claims map[string]any
	// Content is the SHA-256 of the token's JWS signing input: its header
	// and payload segments as received, "header.payload". Two tokens with
	// equal Content carry the same signed header and claims even when
	// their signatures differ: an ECDSA signature (r, s) re-encoded as
	// (r, n-s) verifies too, and an issuer may sign the same content twice.
	// Compare Content, not the raw strings, to tell whether two tokens are
	// the same token. Content says nothing about how a token was verified
	// (by Verify or VerifyCaller, with which key, when).
	Content [32]byte
}
