package token

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
)

// CheckKeys reports whether keys may serve an issuer that allows
// algorithms, as NewVerifier checks a StaticKeys: there is at least one
// key, every key is usable (RSA keys have at least 2048 bits, HMAC secrets
// at least 32 bytes, EC keys are P-256/P-384/P-521, a pinned Algorithm
// fits the key's type, no private keys), and at least one key can verify
// one of algorithms. The error joins every problem.
func CheckKeys(keys []Key, algorithms []string) error {
	return errors.Join(checkKeys(keys, algorithms)...)
}

func checkKeys(keys []Key, algorithms []string) []error {
	if len(keys) == 0 {
		return []error{errors.New("keys: no keys")}
	}
	var errs []error
	fits := false
	for j, k := range keys {
		if err := checkKey(k); err != nil {
			errs = append(errs, fmt.Errorf("keys[%d] (kid %q): %s", j, k.ID, err))
		}
		for _, a := range algorithms {
			if spec, ok := algs[a]; ok && usable(k, a, spec) {
				fits = true
			}
		}
	}
	// Every token would be refused (disallowed_alg): a key of another type
	// than the algorithms name, such as an EC key under algorithms: [RS256].
	if !fits && len(algorithms) > 0 {
		errs = append(errs, fmt.Errorf("no key can verify any of algorithms %v", algorithms))
	}
	return errs
}

// ReplaceableKeys is a KeySet whose keys can be replaced while it serves,
// such as keys read from a file that is rotated: every Lookup sees either
// the old keys or the new, never a mix. It is safe for concurrent use.
type ReplaceableKeys struct {
	keys atomic.Pointer[StaticKeys]
}

var _ KeySet = (*ReplaceableKeys)(nil)

// NewReplaceableKeys returns a ReplaceableKeys holding a copy of keys.
// NewVerifier checks them as it checks a StaticKeys.
func NewReplaceableKeys(keys []Key) *ReplaceableKeys {
	r := &ReplaceableKeys{}
	k := StaticKeys(slices.Clone(keys))
	r.keys.Store(&k)
	return r
}

// Keys returns the keys held now. The caller must not modify them.
func (r *ReplaceableKeys) Keys() StaticKeys { return *r.keys.Load() }

// Lookup implements KeySet on the keys held now, as StaticKeys.Lookup.
func (r *ReplaceableKeys) Lookup(ctx context.Context, kid string) ([]Key, error) {
	return r.Keys().Lookup(ctx, kid)
}

// Replace checks keys against algorithms (CheckKeys) and, when they pass,
// holds a copy of them instead of the old ones. It returns the IDs of the
// keys that left the set ("" for a key without an ID): a key whose ID is
// no longer there, or whose ID is there now with other key material. A
// cache of verified tokens must forget the tokens those keys verified. On
// error nothing changes.
func (r *ReplaceableKeys) Replace(keys []Key, algorithms []string) (removed []string, err error) {
	if err := CheckKeys(keys, algorithms); err != nil {
		return nil, err
	}
	next := StaticKeys(slices.Clone(keys))
	old := *r.keys.Swap(&next)
	return RemovedKeys(old, next), nil
}

// Retain keeps only the held keys that are also in keys (the same ID,
// algorithm and material) and returns the IDs of those it dropped, as
// Replace does; it never adds one. It is how a key file whose new contents
// cannot serve still revokes: the keys it no longer holds are gone, even
// though the keys it holds are refused. What is left may be nothing, and
// then every token of the issuer is refused.
func (r *ReplaceableKeys) Retain(keys []Key) (removed []string) {
	old := r.Keys()
	held := indexKeys(keys)
	var kept StaticKeys
	for _, k := range old {
		if held.has(k) {
			kept = append(kept, k)
		}
	}
	removed = RemovedKeys(old, kept)
	if len(removed) > 0 {
		r.keys.Store(&kept)
	}
	return removed
}

// RemovedKeys returns the distinct IDs of the keys of old that next does
// not hold as one key (the same ID, pinned algorithm and key material), in
// the order old holds them, "" for a key without an ID: the keys that
// left, whose cached verifications must be forgotten. Its time is linear in
// the keys of both sets, which can hold thousands when they come from
// outside (compared pair by pair, two sets of 7,000 keys without IDs took
// 28 s).
func RemovedKeys(old, next []Key) []string {
	held := indexKeys(next)
	var removed []string
	seen := make(map[string]bool)
	for _, k := range old {
		if !held.has(k) && !seen[k.ID] {
			seen[k.ID] = true
			removed = append(removed, k.ID)
		}
	}
	return removed
}

// keyIndex is a set of keys by identity (keyIdentity).
type keyIndex map[string]struct{}

func indexKeys(keys []Key) keyIndex {
	ix := make(keyIndex, len(keys))
	for _, k := range keys {
		if id, ok := keyIdentity(k); ok {
			ix[id] = struct{}{}
		}
	}
	return ix
}

// has reports whether ix holds k as one key.
func (ix keyIndex) has(k Key) bool {
	id, ok := keyIdentity(k)
	if !ok {
		return false
	}
	_, held := ix[id]
	return held
}

// keyIdentity returns a string that two keys share exactly when they are
// one key: the same ID, the same pinned algorithm, the same material (a
// public key by its PKIX encoding, an HMAC secret by its SHA-256, so that
// no secret is compared byte by byte). ok is false for a key whose
// material cannot be encoded, which is then no key's equal.
func keyIdentity(k Key) (id string, ok bool) {
	var material []byte
	switch pub := k.Public.(type) {
	case []byte:
		sum := sha256.Sum256(pub)
		material = append([]byte("hmac "), sum[:]...)
	default:
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return "", false
		}
		material = der
	}
	return strconv.Itoa(len(k.ID)) + ":" + k.ID + strconv.Itoa(len(k.Algorithm)) + ":" + k.Algorithm + string(material), true
}
