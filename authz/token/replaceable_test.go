package token_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// TestReplaceableKeys: a replaced key set serves the new keys at once;
// tokens signed by a key that left fail, tokens of the new key pass;
// Replace names exactly the keys that left (by ID, a key whose material
// changed under the same ID included), and refuses keys that could not
// serve the issuer, keeping the old ones.
func TestReplaceableKeys(t *testing.T) {
	old, next := authztest.NewIssuer(t, "ES256"), authztest.NewIssuer(t, "ES256")
	next.KeyID = "next"
	keys := token.NewReplaceableKeys([]token.Key{old.PublicKey()})
	cfg := old.Config()
	cfg.Keys = keys
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	oldTok, nextTok := old.Mint(t, map[string]any{"sub": "a"}), next.Mint(t, map[string]any{"sub": "a"})
	verifies := func(tok string) bool {
		_, err := v.Verify(t.Context(), tok)
		return err == nil
	}
	if !verifies(oldTok) || verifies(nextTok) {
		t.Fatal("before: want only the old key's token verified")
	}

	// Both keys (a rotation's overlap), then only the new one.
	if removed, err := keys.Replace([]token.Key{old.PublicKey(), next.PublicKey()}, cfg.Algorithms); err != nil || len(removed) != 0 {
		t.Fatalf("adding a key: removed %q, err %v", removed, err)
	}
	if !verifies(oldTok) || !verifies(nextTok) {
		t.Fatal("overlap: want both tokens verified")
	}
	if removed, err := keys.Replace([]token.Key{next.PublicKey()}, cfg.Algorithms); err != nil || !slices.Equal(removed, []string{old.KeyID}) {
		t.Fatalf("dropping the old key: removed %q, err %v", removed, err)
	}
	if verifies(oldTok) || !verifies(nextTok) {
		t.Fatal("after: want only the new key's token verified")
	}

	// Refused: nothing changes.
	rsa := authztest.NewIssuer(t, "RS256")
	for name, bad := range map[string][]token.Key{
		"no keys":           nil,
		"wrong type":        {rsa.PublicKey()},
		"an unusable key":   {next.PublicKey(), {ID: "short", Public: []byte("short")}},
		"a key pinned away": {{ID: "next", Algorithm: "ES384", Public: next.PublicKey().Public}},
	} {
		if _, err := keys.Replace(bad, cfg.Algorithms); err == nil {
			t.Errorf("%s: Replace accepted it", name)
		}
		if !verifies(nextTok) {
			t.Fatalf("%s: the keys in service changed", name)
		}
	}

	// The same ID with other material left the set; so did an ID-less key.
	other := authztest.NewIssuer(t, "ES256")
	other.KeyID = "next"
	anon := authztest.NewIssuer(t, "ES256")
	anon.KeyID = ""
	if removed, err := keys.Replace([]token.Key{other.PublicKey(), anon.PublicKey()}, cfg.Algorithms); err != nil || !slices.Equal(removed, []string{"next"}) {
		t.Fatalf("same kid, new key: removed %q, err %v", removed, err)
	}
	if verifies(nextTok) {
		t.Fatal("a token of the replaced key still verifies")
	}
	if removed, err := keys.Replace([]token.Key{other.PublicKey()}, cfg.Algorithms); err != nil || !slices.Equal(removed, []string{""}) {
		t.Fatalf("ID-less key dropped: removed %q, err %v", removed, err)
	}
}

// TestReplaceableKeysConcurrent replaces keys while tokens are verified,
// for -race: every verification sees one whole key set.
func TestReplaceableKeysConcurrent(t *testing.T) {
	a := authztest.NewIssuer(t, "ES256")
	keys := token.NewReplaceableKeys([]token.Key{a.PublicKey()})
	cfg := a.Config()
	cfg.Keys = keys
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	tok := a.Mint(t, map[string]any{"sub": "a"})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := v.Verify(t.Context(), tok); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 1000 {
		if _, err := keys.Replace([]token.Key{a.PublicKey()}, cfg.Algorithms); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestNewVerifierChecksReplaceableKeys: the keys a ReplaceableKeys holds
// at start are checked as a StaticKeys' are.
func TestNewVerifierChecksReplaceableKeys(t *testing.T) {
	a := authztest.NewIssuer(t, "RS256")
	cfg := a.Config()
	cfg.Algorithms = []string{"ES256"}
	cfg.Keys = token.NewReplaceableKeys([]token.Key{a.PublicKey()})
	_, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err == nil || !strings.Contains(err.Error(), "no key can verify any of algorithms [ES256]") {
		t.Fatalf("err = %v", err)
	}
}

// TestReplaceableKeysRetain: keys a refused file no longer holds are gone
// all the same (a revocation), those it still holds stay, nothing is ever
// added, and nothing at all left means every token is refused.
func TestReplaceableKeysRetain(t *testing.T) {
	a, b, c := authztest.NewIssuer(t, "ES256"), authztest.NewIssuer(t, "ES256"), authztest.NewIssuer(t, "ES256")
	a.KeyID, b.KeyID, c.KeyID = "a", "b", "c"
	keys := token.NewReplaceableKeys([]token.Key{a.PublicKey(), b.PublicKey()})
	cfg := a.Config()
	cfg.Keys = keys
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	verifies := func(is *authztest.Issuer) bool {
		_, err := v.Verify(t.Context(), is.Mint(t, map[string]any{"sub": "x"}))
		return err == nil
	}
	if removed := keys.Retain([]token.Key{b.PublicKey(), c.PublicKey()}); !slices.Equal(removed, []string{"a"}) {
		t.Fatalf("removed %q, want [a]", removed)
	}
	if verifies(a) || !verifies(b) || verifies(c) {
		t.Fatal("want only b verified: a was dropped, c never added")
	}
	if removed := keys.Retain([]token.Key{b.PublicKey()}); len(removed) != 0 {
		t.Fatalf("nothing to drop, removed %q", removed)
	}
	if removed := keys.Retain(nil); !slices.Equal(removed, []string{"b"}) || verifies(b) {
		t.Fatalf("retaining nothing: removed %q, b verifies %v", removed, verifies(b))
	}
}

// TestRemovedKeys: a key is removed when no key of the new set has its ID,
// pinned algorithm and material; each ID is named once, in the old set's
// order.
func TestRemovedKeys(t *testing.T) {
	ec1, ec2 := ecKey(t, elliptic.P256()), ecKey(t, elliptic.P256())
	ed, _ := edKey(t)
	secret := []byte(strings.Repeat("s", 32))
	k := func(id, alg string, pub any) token.Key { return token.Key{ID: id, Algorithm: alg, Public: pub} }
	for _, tc := range []struct {
		name      string
		old, next []token.Key
		want      []string
	}{
		{"same keys", []token.Key{k("a", "", &ec1.PublicKey), k("", "", ed)}, []token.Key{k("", "", ed), k("a", "", &ec1.PublicKey)}, nil},
		{"a copy of the key is the key", []token.Key{k("a", "", &ec1.PublicKey)}, []token.Key{k("a", "", &ecdsa.PublicKey{Curve: ec1.Curve, X: ec1.X, Y: ec1.Y})}, nil},
		{"other material under the kid", []token.Key{k("a", "", &ec1.PublicKey)}, []token.Key{k("a", "", &ec2.PublicKey)}, []string{"a"}},
		{"kid changed", []token.Key{k("a", "", &ec1.PublicKey)}, []token.Key{k("b", "", &ec1.PublicKey)}, []string{"a"}},
		{"pinned algorithm changed", []token.Key{k("a", "", &ec1.PublicKey)}, []token.Key{k("a", "ES256", &ec1.PublicKey)}, []string{"a"}},
		{"key without kid gone", []token.Key{k("", "", ed), k("a", "", &ec1.PublicKey)}, []token.Key{k("a", "", &ec1.PublicKey)}, []string{""}},
		{"secret changed", []token.Key{k("", "", secret)}, []token.Key{k("", "", []byte(strings.Repeat("t", 32)))}, []string{""}},
		{"secret kept", []token.Key{k("", "", secret)}, []token.Key{k("", "", slices.Clone(secret))}, nil},
		{"an id named once, in order", []token.Key{k("b", "", &ec1.PublicKey), k("a", "", &ec1.PublicKey), k("b", "", &ec2.PublicKey)}, nil, []string{"b", "a"}},
		{"one of two keys under a kid gone", []token.Key{k("a", "", &ec1.PublicKey), k("a", "", &ec2.PublicKey)}, []token.Key{k("a", "", &ec2.PublicKey)}, []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := token.RemovedKeys(tc.old, tc.next); !slices.Equal(got, tc.want) {
				t.Errorf("RemovedKeys = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestRemovedKeysLinear: comparing two key sets costs work in proportion to
// their keys, not to their product. A remote key set can hold thousands of
// keys without an ID (a megabyte of EC keys is 9,000), and compared pair by
// pair (ecdsa.PublicKey.Equal allocates) two sets of 7,000 took 28 s of
// a refresh. Counted in allocations, which the pairwise comparison made
// two of per pair.
func TestRemovedKeysLinear(t *testing.T) {
	const n = 1000
	old, next := make([]token.Key, n), make([]token.Key, n)
	for i := range n {
		old[i] = token.Key{Public: &ecKey(t, elliptic.P256()).PublicKey}
		next[i] = token.Key{Public: &ecKey(t, elliptic.P256()).PublicKey}
	}
	allocs := testing.AllocsPerRun(1, func() {
		if got := token.RemovedKeys(old, next); !slices.Equal(got, []string{""}) {
			t.Fatalf("RemovedKeys = %q", got)
		}
	})
	if limit := 100.0 * 2 * n; allocs > limit {
		t.Errorf("%.0f allocations comparing two sets of %d keys, want at most %.0f (linear)", allocs, n, limit)
	}
}
