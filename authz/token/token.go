// Package token verifies bearer tokens (compact JWS JWTs) under the rules of
// RFC 8725 and Verdict's design: algorithms allow-listed per issuer and bound
// to the key's type, "none" always refused, iss matched exactly against a
// configured issuer, aud required to contain a configured audience, exp
// required by default, nbf/iat checked with leeway, keys chosen by kid from
// that issuer's keys only, header-supplied keys (jku, x5u, jwk, x5c) never
// trusted, and tokens over the size limit refused before any parsing.
//
// Keys come from a KeySet, so a remote JWKS source can plug in without
// touching the rules. Every failure wraps ErrInvalid and one cause sentinel
// (ErrExpired, ErrBadSignature, ...); Reason names the cause for a deny.
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
// of these; Reason maps them to the short names used in deny reasons.
var (
	ErrTooLarge        = errors.New("too_large")
	ErrMalformed       = errors.New("malformed")
	ErrDisallowedAlg   = errors.New("disallowed_alg")
	ErrUnknownKID      = errors.New("unknown_kid")
	ErrBadSignature    = errors.New("bad_signature")
	ErrExpired         = errors.New("expired")
	ErrNotYetValid     = errors.New("not_yet_valid")
	ErrBadIssuer       = errors.New("bad_issuer")
	ErrBadAudience     = errors.New("bad_audience")
	ErrMissingClaim    = errors.New("missing_claim")
	ErrKeysUnavailable = errors.New("keys_unavailable")
)

// Key is one verification key.
type Key struct {
	// ID is the key's kid; empty when the key has none.
	ID string
	// Algorithm pins the key to one JWS algorithm ("RS256"); empty binds it
	// to every algorithm of its type that the issuer allows.
	Algorithm string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey, or a
	// []byte HMAC secret.
	Public crypto.PublicKey
}

// KeySet finds an issuer's verification keys. Implementations must be safe
// for concurrent use.
type KeySet interface {
	// Lookup returns the keys whose ID equals kid; with kid empty, every key.
	// An empty result with a nil error means no such key.
	Lookup(ctx context.Context, kid string) ([]Key, error)
}

// Issuer is one trusted token issuer.
type Issuer struct {
	// Issuer must equal the token's iss claim exactly.
	Issuer string
	// Audiences: the token's aud must contain at least one of them. Required.
	Audiences []string
	// Algorithms allowed for this issuer ("RS256", "ES256", "EdDSA", "HS256", ...).
	// Required; "none" is refused.
	Algorithms []string
	// Keys holds the issuer's verification keys.
	Keys KeySet
	// ExpOptional accepts tokens without exp. The default requires it.
	ExpOptional bool
}

// Options configures a Verifier. The zero value of each field means its default.
type Options struct {
	Issuers []Issuer
	// Leeway is the clock skew allowed for exp, nbf and iat. Default 0.
	Leeway time.Duration
	// MaxBytes refuses longer tokens before parsing. Default 8192.
	MaxBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verified is a successfully verified token.
type Verified struct {
	Issuer  string
	Subject string
	// KeyID is the kid of the key that verified the token ("" when none).
	KeyID string
	// ExpiresAt is the exp claim; zero when absent (only with ExpOptional).
	ExpiresAt time.Time
	// Claims are all the token's claims, numbers as json.Number.
	Claims map[string]any
}
