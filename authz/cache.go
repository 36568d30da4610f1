package authz

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"
)

// cacheKey is a SHA-256. The token cache keys on the hash of the whole
// compact token, never a part of it (a header or payload alone), so two
// tokens that differ only in their signature never share an entry; the
// decision cache on the hash of what the policy reads (keyPlan.key).
type cacheKey [sha256.Size]byte

const (
	cacheShards = 32
	// noExpTTL bounds how long an entry without a natural expiry (a token
	// without exp, an anonymous decision) stays cached.
	noExpTTL = 5 * time.Minute
	// evictionSample is how many entries a full main segment looks at to
	// evict one.
	evictionSample = 8
	// probationShare is the share of a cache's bounds (1/probationShare)
	// given to entries used once.
	probationShare = 5
	// entryOverhead is the estimated memory of an entry beyond its value:
	// its key, expiry and size in a map slot (with the slack of a map that
	// grows by doubling), and its place in the probation queue. Measured:
	// 250-300 bytes.
	entryOverhead = 256
)

// cacheLimits bounds a cache: bytes of estimated memory (entryOverhead
// plus the value's own estimate), and when entries is positive, entries.
// A cache with no bytes caches nothing.
type cacheLimits struct {
	bytes   int
	entries int
}

// expiringCache is a bounded, sharded map whose entries expire, in two
// segments per shard. A new entry goes to a small probationary segment
// (1/probationShare of the bounds), which evicts in insertion order; an
// entry found there (its second use) moves to the main segment. So a flood
// of keys used once (one-shot tokens, one-off requests) churns the
// probationary segment and never displaces the entries in use. When the
// main segment is full, a few of its entries are sampled and the expired
// ones, else the one expiring first, evicted: with Go's randomised map
// iteration that is a random eviction, which needs no bookkeeping on the
// hot path. Safe for concurrent use; a nil cache caches nothing.
type expiringCache[V any] struct {
	shards [cacheShards]cacheShard[V]
}

type cacheShard[V any] struct {
	mu        sync.RWMutex
	main      segment[V]
	probation segment[V]
	// queue is the probationary segment's insertion order; an item whose
	// entry has since left (promoted, deleted, replaced) is skipped.
	queue []queued
	head  int
	seq   uint64
}

type queued struct {
	key cacheKey
	seq uint64
}

type segment[V any] struct {
	entries    map[cacheKey]cacheEntry[V]
	bytes      int
	maxBytes   int
	maxEntries int // 0: no bound
}

type cacheEntry[V any] struct {
	value   V
	expires time.Time
	size    int    // estimated bytes, entryOverhead included
	seq     uint64 // the probation queue item that stands for it
}

// newExpiringCache returns a cache within limits, or nil (no caching) when
// limits.bytes is not positive.
func newExpiringCache[V any](limits cacheLimits) *expiringCache[V] {
	if limits.bytes <= 0 {
		return nil
	}
	bytes := max(1, limits.bytes/cacheShards)
	probationBytes := max(1, bytes/probationShare)
	probationEntries, mainEntries := 0, 0
	if limits.entries > 0 {
		entries := max(2, limits.entries/cacheShards)
		probationEntries = max(1, entries/probationShare)
		mainEntries = entries - probationEntries
	}
	c := &expiringCache[V]{}
	for i := range c.shards {
		s := &c.shards[i]
		s.main = segment[V]{entries: map[cacheKey]cacheEntry[V]{}, maxBytes: max(1, bytes-probationBytes), maxEntries: mainEntries}
		s.probation = segment[V]{entries: map[cacheKey]cacheEntry[V]{}, maxBytes: probationBytes, maxEntries: probationEntries}
	}
	return c
}

func (c *expiringCache[V]) shard(k *cacheKey) *cacheShard[V] {
	return &c.shards[binary.LittleEndian.Uint32(k[:4])%cacheShards]
}

// get returns the value for k if present and not expired at now. An entry
// found in the probationary segment moves to the main one.
func (c *expiringCache[V]) get(k *cacheKey, now time.Time) (V, bool) {
	var zero V
	if c == nil {
		return zero, false
	}
	s := c.shard(k)
	s.mu.RLock()
	e, ok := s.main.entries[*k]
	if ok {
		s.mu.RUnlock()
		if !now.Before(e.expires) {
			return zero, false
		}
		return e.value, true
	}
	e, ok = s.probation.entries[*k]
	s.mu.RUnlock()
	if !ok || !now.Before(e.expires) {
		return zero, false
	}
	s.mu.Lock()
	if e, ok := s.probation.entries[*k]; ok {
		s.probation.remove(k, e)
		if s.main.makeRoom(e.size, now) {
			s.main.add(k, e)
		}
	}
	s.mu.Unlock()
	return e.value, true
}

// put stores v, of estimated size bytes (its own memory; the cache adds
// entryOverhead), until expires: on probation when k is new, in place
// when k is cached. An entry already expired at now, or larger than the
// probationary segment, is not stored.
func (c *expiringCache[V]) put(k *cacheKey, v V, size int, expires, now time.Time) {
	size += entryOverhead
	if c == nil || !now.Before(expires) {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	e := cacheEntry[V]{value: v, expires: expires, size: size}
	if old, ok := s.main.entries[*k]; ok {
		s.main.remove(k, old)
		if s.main.makeRoom(size, now) {
			s.main.add(k, e)
		}
		return
	}
	if old, ok := s.probation.entries[*k]; ok {
		s.probation.remove(k, old)
	}
	if size > s.probation.maxBytes {
		return
	}
	for !s.probation.fits(size) && s.evictProbation() {
	}
	s.seq++
	e.seq = s.seq
	s.probation.add(k, e)
	s.queue = append(s.queue, queued{key: *k, seq: e.seq})
	if stale := len(s.queue) - s.head - len(s.probation.entries); stale > 64 && stale > 2*len(s.probation.entries) {
		s.compactQueue()
	}
}

// evictProbation evicts the oldest entry on probation; false when there is
// none.
func (s *cacheShard[V]) evictProbation() bool {
	for s.head < len(s.queue) {
		q := s.queue[s.head]
		s.queue[s.head] = queued{}
		s.head++
		if e, ok := s.probation.entries[q.key]; ok && e.seq == q.seq {
			s.probation.remove(&q.key, e)
			if s.head > len(s.queue)/2 {
				s.compactQueue()
			}
			return true
		}
	}
	s.queue, s.head = s.queue[:0], 0
	return false
}

// compactQueue drops the queue items whose entries have left probation.
func (s *cacheShard[V]) compactQueue() {
	live := s.queue[:0]
	for _, q := range s.queue[s.head:] {
		if e, ok := s.probation.entries[q.key]; ok && e.seq == q.seq {
			live = append(live, q)
		}
	}
	clear(s.queue[len(live):])
	s.queue, s.head = live, 0
}

func (g *segment[V]) fits(size int) bool {
	return g.bytes+size <= g.maxBytes && (g.maxEntries == 0 || len(g.entries) < g.maxEntries)
}

func (g *segment[V]) add(k *cacheKey, e cacheEntry[V]) {
	g.entries[*k] = e
	g.bytes += e.size
}

func (g *segment[V]) remove(k *cacheKey, e cacheEntry[V]) {
	delete(g.entries, *k)
	g.bytes -= e.size
}

// makeRoom evicts from the main segment until an entry of size fits; false
// when it never can.
func (g *segment[V]) makeRoom(size int, now time.Time) bool {
	if size > g.maxBytes {
		return false
	}
	for !g.fits(size) {
		// Sample a few entries (map iteration order is random): drop the
		// expired ones, else the one expiring first.
		var victim cacheKey
		var victimEntry cacheEntry[V]
		sampled, evicted := 0, false
		for key, e := range g.entries {
			if !now.Before(e.expires) {
				g.remove(&key, e)
				evicted = true
			} else if sampled == 0 || e.expires.Before(victimEntry.expires) {
				victim, victimEntry = key, e
			}
			if sampled++; sampled == evictionSample {
				break
			}
		}
		if !evicted {
			if len(g.entries) == 0 {
				return false
			}
			g.remove(&victim, victimEntry)
		}
	}
	return true
}

// delete removes the entry for k, if any.
func (c *expiringCache[V]) delete(k *cacheKey) {
	if c == nil {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	if e, ok := s.main.entries[*k]; ok {
		s.main.remove(k, e)
	}
	if e, ok := s.probation.entries[*k]; ok {
		s.probation.remove(k, e)
	}
	s.mu.Unlock()
}

// len counts entries in both segments, expired or not.
func (c *expiringCache[V]) len() int {
	n, _ := c.stats()
	return n
}

// stats counts entries and their estimated bytes, in both segments.
func (c *expiringCache[V]) stats() (entries, bytes int) {
	if c == nil {
		return 0, 0
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		entries += len(s.main.entries) + len(s.probation.entries)
		bytes += s.main.bytes + s.probation.bytes
		s.mu.RUnlock()
	}
	return entries, bytes
}

// deleteFunc removes every entry whose value matches.
func (c *expiringCache[V]) deleteFunc(match func(V) bool) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for _, g := range [...]*segment[V]{&s.main, &s.probation} {
			for k, e := range g.entries {
				if match(e.value) {
					g.remove(&k, e)
				}
			}
		}
		s.mu.Unlock()
	}
}
