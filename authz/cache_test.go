package authz

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// mainLen counts the entries in the main segments.
func (c *expiringCache[V]) mainLen() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.main.entries)
		s.mu.RUnlock()
	}
	return n
}

func key(i int) cacheKey { return cacheKey(sha256.Sum256(fmt.Appendf(nil, "token-%d", i))) }

func TestExpiringCacheBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newExpiringCache[string](cacheLimits{bytes: 1 << 30, entries: cacheShards * 5})
	for i := range 10_000 {
		k := key(i)
		c.put(&k, fmt.Sprint(i), 1, now.Add(time.Hour), now)
		c.get(&k, now) // a second use: to the main segment
	}
	if n := c.len(); n > cacheShards*5 {
		t.Fatalf("cache holds %d entries, bound is %d", n, cacheShards*5)
	}
	k := key(20_000)
	c.put(&k, "x", 1, now.Add(time.Minute), now)
	if v, ok := c.get(&k, now); !ok || v != "x" {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(&k, now.Add(time.Minute)); ok {
		t.Fatal("entry served at its expiry")
	}
	expired := key(20_001)
	c.put(&expired, "old", 1, now, now)
	if _, ok := c.get(&expired, now.Add(-time.Second)); ok {
		t.Fatal("an already-expired entry was cached")
	}
}

// TestExpiringCacheBoundedByBytes: the estimated bytes stay within the
// bound, whatever the mix of sizes, and an entry larger than the
// probationary segment is not stored.
func TestExpiringCacheBoundedByBytes(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const bound = 1 << 20
	c := newExpiringCache[int](cacheLimits{bytes: bound})
	for i := range 20_000 {
		k := key(i)
		c.put(&k, i, 100+i%3000, now.Add(time.Hour), now)
		if i%2 == 0 {
			c.get(&k, now)
		}
	}
	n, bytes := c.stats()
	if bytes > bound || n == 0 {
		t.Fatalf("cache holds %d entries of %d bytes, bound is %d bytes", n, bytes, bound)
	}
	big := key(-1)
	c.put(&big, 1, bound/cacheShards, now.Add(time.Hour), now)
	if _, ok := c.get(&big, now); ok {
		t.Fatal("an entry larger than the probationary segment was stored")
	}
}

// TestExpiringCacheOneShotFloodKeepsHotEntries: entries used twice live in
// the main segment, which a flood of keys used once never reaches.
func TestExpiringCacheOneShotFloodKeepsHotEntries(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newExpiringCache[int](cacheLimits{bytes: 1 << 30, entries: cacheShards * 50})
	const hot = cacheShards * 10 // well within the main segment's 40 per shard
	for i := range hot {
		k := key(i)
		c.put(&k, i, 1, now.Add(time.Hour), now)
		if _, ok := c.get(&k, now); !ok {
			t.Fatalf("hot entry %d missing on its second use", i)
		}
	}
	for i := range 100_000 {
		k := key(hot + i)
		c.put(&k, i, 1, now.Add(time.Hour), now)
	}
	for i := range hot {
		k := key(i)
		if v, ok := c.get(&k, now); !ok || v != i {
			t.Fatalf("hot entry %d displaced by keys used once", i)
		}
	}
	// The probationary segment still admits: a new key used twice stays.
	k := key(-1)
	c.put(&k, -1, 1, now.Add(time.Hour), now)
	if _, ok := c.get(&k, now); !ok {
		t.Fatal("a new entry is not found on its second use")
	}
}

func TestExpiringCacheDeleteFunc(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newExpiringCache[int](cacheLimits{bytes: 1 << 30})
	for i := range 100 {
		k := key(i)
		c.put(&k, i, 1, now.Add(time.Hour), now)
		if i%4 < 2 {
			c.get(&k, now) // half of them in the main segment
		}
	}
	c.deleteFunc(func(v int) bool { return v%2 == 0 })
	for i := range 100 {
		k := key(i)
		if _, ok := c.get(&k, now); ok != (i%2 == 1) {
			t.Fatalf("entry %d present=%v after deleting the even ones", i, ok)
		}
	}
	for i := range 100 {
		k := key(i)
		c.delete(&k)
	}
	if n, bytes := c.stats(); n != 0 || bytes != 0 {
		t.Fatalf("%d entries of %d bytes left after deleting them all", n, bytes)
	}
}

func TestNilExpiringCache(t *testing.T) {
	c := newExpiringCache[int](cacheLimits{}) // a disabled cache
	if c != nil {
		t.Fatal("a cache without bytes was made")
	}
	k := key(1)
	c.put(&k, 1, 1, time.Now().Add(time.Hour), time.Now())
	c.deleteFunc(func(int) bool { return true })
	c.delete(&k)
	if _, ok := c.get(&k, time.Now()); ok || c.len() != 0 {
		t.Fatal("nil cache stored an entry")
	}
}

// TestClaimBytesTracksConvertedValue: the token cache's estimate of a
// token's claims is within a small factor of the memory the converted OPA
// value really takes (allocated bytes of ast.InterfaceToValue, the least
// of three measures: anything else running only adds), for a usual token
// and for shapes an issuer could sign to make the estimate lie (many tiny
// values, many keys, deep nesting).
func TestClaimBytesTracksConvertedValue(t *testing.T) {
	many := make([]any, 2000)
	for i := range many {
		many[i] = json.Number("0")
	}
	keys := map[string]any{}
	for i := range 500 {
		keys[fmt.Sprint("k", i)] = true
	}
	var deep any = "x"
	for range 200 {
		deep = []any{map[string]any{"a": deep}}
	}
	for name, claims := range map[string]map[string]any{
		"usual": {"iss": "https://idp.example", "sub": "user-42", "aud": []any{"verdict"},
			"exp": json.Number("1800000000"), "iat": json.Number("1700000000"),
			"roles": []any{"viewer", "editor"}, "jti": "0c7f5e4a"},
		"many tiny values": {"n": many},
		"many keys":        keys,
		"deep":             {"d": deep},
	} {
		t.Run(name, func(t *testing.T) {
			measured := math.MaxInt
			for range 3 {
				const runs = 20
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for range runs {
					if _, err := ast.InterfaceToValue(claims); err != nil {
						t.Fatal(err)
					}
				}
				runtime.ReadMemStats(&after)
				measured = min(measured, int(after.TotalAlloc-before.TotalAlloc)/runs)
			}
			est := claimBytes(claims)
			t.Logf("estimate %d bytes, converted value %d bytes", est, measured)
			if est < measured/2 || est > measured*4 {
				t.Errorf("estimate %d bytes, converted value %d bytes", est, measured)
			}
		})
	}
}

// TestForgetKeysOnePass: the keys a refreshed key set lost are forgotten
// together: every cached verification made with one of them goes, the
// others stay (another issuer's key of the same ID included), and the cache
// is swept once (one forget generation) whatever their number: a sweep
// for each of 9,000 keys over 30,000 cached tokens took 40 s of a core.
func TestForgetKeysOnePass(t *testing.T) {
	e := &Engine{cache: newExpiringCache[*verifiedToken](cacheLimits{bytes: 1 << 20})}
	now := time.Now()
	type entry struct{ issuer, kid string }
	entries := []entry{{"https://a", "k1"}, {"https://a", "k2"}, {"https://a", ""}, {"https://b", "k1"}, {"https://a", "k3"}}
	key := func(i int) cacheKey { return cacheKey(sha256.Sum256([]byte(fmt.Sprint(i)))) }
	for i, en := range entries {
		k := key(i)
		e.cache.put(&k, &verifiedToken{issuer: en.issuer, keyID: en.kid}, 100, now.Add(time.Hour), now)
	}
	kids := []string{"k1", ""}
	for i := range 5000 {
		kids = append(kids, fmt.Sprint("gone-", i))
	}
	before := e.forgets.Load()
	e.ForgetKeys("https://a", kids)
	if n := e.forgets.Load() - before; n != 1 {
		t.Errorf("%d sweeps of the cache to forget %d keys, want 1", n, len(kids))
	}
	for i, en := range entries {
		k := key(i)
		_, cached := e.cache.get(&k, now)
		if want := en.issuer != "https://a" || (en.kid != "k1" && en.kid != ""); cached != want {
			t.Errorf("verification by %s key %q cached: %v, want %v", en.issuer, en.kid, cached, want)
		}
	}
}
