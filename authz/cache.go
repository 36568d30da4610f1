package authz

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey is a SHA-256. The token cache keys on the hash of the whole
// compact token, never a part of it (a header or payload alone), so two
// tokens that differ only in their signature never share an entry.
type cacheKey [sha256.Size]byte

const (
	cacheShards = 32
	// noExpTTL bounds how long an entry without a natural expiry (a token
	// without exp, an anonymous decision) stays cached.
	noExpTTL = 5 * time.Minute
	// evictionSample is how many entries a full shard looks at to evict.
	evictionSample = 8
)

// expiringCache is a bounded, sharded map whose entries expire. When a shard
// is full, a few entries are sampled and the expired ones, else one of them,
// evicted: with Go's randomised map iteration that is random eviction, which
// keeps memory bounded under a flood of distinct keys without an LRU's
// bookkeeping on the hot path. Safe for concurrent use; a nil cache caches
// nothing.
type expiringCache[V any] struct {
	perShard int
	shards   [cacheShards]cacheShard[V]
}

type cacheShard[V any] struct {
	mu      sync.RWMutex
	entries map[cacheKey]cacheEntry[V]
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
}

// newExpiringCache returns a cache of about size entries, or nil (no
// caching) when size is not positive.
func newExpiringCache[V any](size int) *expiringCache[V] {
	if size <= 0 {
		return nil
	}
	c := &expiringCache[V]{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].entries = make(map[cacheKey]cacheEntry[V])
	}
	return c
}

func (c *expiringCache[V]) shard(k *cacheKey) *cacheShard[V] {
	return &c.shards[binary.LittleEndian.Uint32(k[:4])%cacheShards]
}

// get returns the value for k if present and not expired at now.
func (c *expiringCache[V]) get(k *cacheKey, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.entries[*k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return zero, false
	}
	return e.value, true
}

// put stores v until expires; an entry already expired at now is not stored.
func (c *expiringCache[V]) put(k *cacheKey, v V, expires, now time.Time) {
	if c == nil || !now.Before(expires) {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[*k]; !ok && len(s.entries) >= c.perShard {
		// Sample a few entries (map iteration order is random): drop the
		// expired ones, or the first sampled when none has expired.
		var victim cacheKey
		sampled, evicted := 0, false
		for key, e := range s.entries {
			if sampled == 0 {
				victim = key
			}
			if !now.Before(e.expires) {
				delete(s.entries, key)
				evicted = true
			}
			if sampled++; sampled == evictionSample {
				break
			}
		}
		if !evicted {
			delete(s.entries, victim)
		}
	}
	s.entries[*k] = cacheEntry[V]{value: v, expires: expires}
}

// delete removes the entry for k, if any.
func (c *expiringCache[V]) delete(k *cacheKey) {
	if c == nil {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	delete(s.entries, *k)
	s.mu.Unlock()
}

// len counts entries, expired or not.
func (c *expiringCache[V]) len() int {
	if c == nil {
		return 0
	}
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.entries)
		s.mu.RUnlock()
	}
	return n
}

// deleteFunc removes every entry whose value matches.
func (c *expiringCache[V]) deleteFunc(match func(V) bool) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if match(e.value) {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}
