package authz

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

func key(i int) tokenKey { return tokenKey(sha256.Sum256(fmt.Appendf(nil, "token-%d", i))) }

func TestTokenCacheBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newTokenCache(cacheShards * 4)
	for i := range 10_000 {
		k := key(i)
		c.put(&k, &verifiedToken{subjectID: fmt.Sprint(i), expires: now.Add(time.Hour)}, now)
	}
	if n := c.len(); n > cacheShards*4 {
		t.Fatalf("cache holds %d entries, bound is %d", n, cacheShards*4)
	}
	k := key(20_000)
	c.put(&k, &verifiedToken{subjectID: "x", expires: now.Add(time.Minute)}, now)
	if v, ok := c.get(&k, now); !ok || v.subjectID != "x" {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(&k, now.Add(time.Minute)); ok {
		t.Fatal("entry served at its expiry")
	}
	expired := key(20_001)
	c.put(&expired, &verifiedToken{expires: now}, now)
	if _, ok := c.get(&expired, now.Add(-time.Second)); ok {
		t.Fatal("an already-expired token was cached")
	}
}

func TestTokenCacheDropKey(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newTokenCache(1024)
	for i := range 100 {
		k := key(i)
		c.put(&k, &verifiedToken{issuer: "iss", keyID: fmt.Sprintf("k%d", i%2), expires: now.Add(time.Hour)}, now)
	}
	c.dropKey("iss", "k0")
	for i := range 100 {
		k := key(i)
		if _, ok := c.get(&k, now); ok != (i%2 == 1) {
			t.Fatalf("entry %d present=%v after dropping k0", i, ok)
		}
	}
}

func TestNilTokenCache(t *testing.T) {
	var c *tokenCache // a disabled cache
	k := key(1)
	c.put(&k, &verifiedToken{expires: time.Now().Add(time.Hour)}, time.Now())
	if _, ok := c.get(&k, time.Now()); ok || c.len() != 0 {
		t.Fatal("nil cache stored an entry")
	}
}
