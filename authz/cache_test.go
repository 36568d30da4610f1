package authz

import (
	"crypto/sha256"
	"fmt"
	"testing"
	"time"
)

func key(i int) cacheKey { return cacheKey(sha256.Sum256(fmt.Appendf(nil, "token-%d", i))) }

func TestExpiringCacheBoundedAndExpiring(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newExpiringCache[string](cacheShards * 4)
	for i := range 10_000 {
		k := key(i)
		c.put(&k, fmt.Sprint(i), now.Add(time.Hour), now)
	}
	if n := c.len(); n > cacheShards*4 {
		t.Fatalf("cache holds %d entries, bound is %d", n, cacheShards*4)
	}
	k := key(20_000)
	c.put(&k, "x", now.Add(time.Minute), now)
	if v, ok := c.get(&k, now); !ok || v != "x" {
		t.Fatal("fresh entry missing")
	}
	if _, ok := c.get(&k, now.Add(time.Minute)); ok {
		t.Fatal("entry served at its expiry")
	}
	expired := key(20_001)
	c.put(&expired, "old", now, now)
	if _, ok := c.get(&expired, now.Add(-time.Second)); ok {
		t.Fatal("an already-expired entry was cached")
	}
}

func TestExpiringCacheDeleteFunc(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	c := newExpiringCache[int](1024)
	for i := range 100 {
		k := key(i)
		c.put(&k, i, now.Add(time.Hour), now)
	}
	c.deleteFunc(func(v int) bool { return v%2 == 0 })
	for i := range 100 {
		k := key(i)
		if _, ok := c.get(&k, now); ok != (i%2 == 1) {
			t.Fatalf("entry %d present=%v after deleting the even ones", i, ok)
		}
	}
}

func TestNilExpiringCache(t *testing.T) {
	var c *expiringCache[int] // a disabled cache
	k := key(1)
	c.put(&k, 1, time.Now().Add(time.Hour), time.Now())
	c.deleteFunc(func(int) bool { return true })
	if _, ok := c.get(&k, time.Now()); ok || c.len() != 0 {
		t.Fatal("nil cache stored an entry")
	}
}
