package authz

import (
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/token"
)

// purpose says what a token is verified for: a subject's bearer token
// (checked against its issuer's audiences) or a caller's service token
// (checked against the caller audiences instead). The two are cached apart,
// so a token verified for one purpose never passes for the other.
type purpose uint8

const (
	forSubject purpose = iota
	forCaller
)

// verifyToken returns the verified token and its cache key, from the cache
// when it was verified before for the same purpose, has not expired, and
// its issuer's keys are still fresh (hit). A cached verification never
// outlives the keys that made it: stale or unavailable keys deny it as they
// deny a new token, and a removed key has already taken its entries with
// it (ForgetKey).
func (e *Engine) verifyToken(ctx context.Context, raw string, p purpose, now time.Time) (*verifiedToken, cacheKey, bool, error) {
	key := cacheKey(sha256.Sum256([]byte(raw)))
	if p == forCaller {
		key[0] ^= 2
	}
	if e.verifier == nil {
		return nil, key, false, fmt.Errorf("%w: %w: no trusted issuers are configured", token.ErrInvalid, token.ErrBadIssuer)
	}
	if vt, ok := e.cache.get(&key, now); ok {
		e.tokenHits.Add(1)
		if err := e.verifier.KeysFresh(vt.issuer); err != nil {
			return nil, key, false, err
		}
		return vt, key, true, nil
	}
	if e.cache != nil {
		e.tokenMisses.Add(1)
	}
	generation := e.forgets.Load()
	verify := e.verifier.Verify
	if p == forCaller {
		verify = e.verifier.VerifyCaller
	}
	v, err := verify(ctx, raw)
	if err != nil {
		return nil, key, false, err
	}
	vt, err := newVerifiedToken(v, p, now)
	if err != nil {
		return nil, key, false, err
	}
	// A ForgetKey that overlapped this verification may have used the key
	// it forgets: such a verification is not cached. Checking again after
	// the put closes the race with a ForgetKey whose sweep ran between the
	// first check and the put: either the sweep saw the entry, or this
	// second load sees its count.
	if e.forgets.Load() == generation {
		e.cache.put(&key, vt, vt.size, vt.expires, now)
		if e.forgets.Load() != generation {
			e.cache.delete(&key)
		}
	}
	return vt, key, false, nil
}

// newVerifiedToken builds what the engine keeps of a verified token: for a
// subject's token input.subject, for a caller's service token input.caller
// (nil when the token names no service). A token is cached apart per
// purpose, so each entry holds only the value its purpose reads.
func newVerifiedToken(v *token.Verified, p purpose, now time.Time) (*verifiedToken, error) {
	claims, err := ast.InterfaceToValue(v.Claims)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: claims: %w", token.ErrInvalid, token.ErrMalformed, err)
	}
	vt := &verifiedToken{
		issuer:  v.Issuer,
		keyID:   v.KeyID,
		content: v.Content,
		expires: v.ExpiresAt,
	}
	if vt.expires.IsZero() {
		vt.expires = now.Add(noExpTTL)
	}
	// A key memo (keyMemo) takes about 100 bytes; wrapperBytes is the
	// subject's or caller's object around the claims (five members).
	const wrapperBytes = 1024
	vt.size = 384 + len(vt.issuer) + len(vt.keyID)
	switch p {
	case forSubject:
		subject := ast.NewObjectWithCapacity(5)
		subject.Insert(keyAuthenticated, ast.InternedTerm(true))
		subject.Insert(keyMethod, ast.InternedTerm(SubjectToken))
		if v.Subject != "" {
			subject.Insert(keyID, ast.StringTerm(v.Subject))
		}
		subject.Insert(keyIssuer, ast.StringTerm(v.Issuer))
		subject.Insert(keyClaims, ast.NewTerm(claims))
		vt.subject, vt.subjectID = ast.NewTerm(subject), v.Subject
		vt.size += wrapperBytes + claimBytes(v.Claims) + 2*len(vt.subjectID) + len(vt.issuer)
	case forCaller:
		if id := serviceID(v.Claims); id != "" {
			vt.caller = ast.NewTerm(ast.NewObject(
				ast.Item(keyAuthenticated, ast.InternedTerm(true)),
				ast.Item(keyID, ast.StringTerm(id)),
				ast.Item(keyMethod, ast.InternedTerm(CallerToken)),
				ast.Item(keyClaims, ast.NewTerm(claims)),
			))
			vt.callerID = id
			vt.size += wrapperBytes + claimBytes(v.Claims) + 2*len(vt.callerID)
		}
	}
	return vt, nil
}
