package authz

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// tokenKey is the SHA-256 of the whole compact token: the cache never keys on
// a part of a token (a header or payload alone), so two tokens that differ
// only in their signature never share an entry.
type tokenKey [sha256.Size]byte

// verifiedToken is what the engine keeps about a token it has verified:
// the ready-made subject and caller values, so a repeat decision builds no
// claims at all.
type verifiedToken struct {
	subject   *ast.Term // input.subject
	caller    *ast.Term // input.caller, when the token is a service token
	subjectID string
	callerID  string
	issuer    string
	keyID     string
	expires   time.Time // never later than the token's exp
}

const (
	cacheShards = 32
	// noExpTTL bounds how long a token without exp (accepted only when an
	// issuer is configured with exp optional) stays cached.
	noExpTTL = 5 * time.Minute
	// evictionSample is how many entries a full shard looks at to evict.
	evictionSample = 8
)

// tokenCache is a bounded, sharded map of verified tokens. When a shard is
// full, a few entries are sampled and the expired ones, else one of them,
// evicted: with Go's randomised map iteration that is random eviction, which keeps memory
// bounded under a flood of distinct tokens without an LRU's bookkeeping on
// the hot path. Safe for concurrent use; a nil *tokenCache caches nothing.
type tokenCache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[tokenKey]*verifiedToken
}

func newTokenCache(size int) *tokenCache {
	if size <= 0 {
		return nil
	}
	c := &tokenCache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].entries = make(map[tokenKey]*verifiedToken)
	}
	return c
}

func (c *tokenCache) shard(k *tokenKey) *cacheShard {
	return &c.shards[binary.LittleEndian.Uint32(k[:4])%cacheShards]
}

// get returns the entry for k if present and not expired at now.
func (c *tokenCache) get(k *tokenKey, now time.Time) (*verifiedToken, bool) {
	if c == nil {
		return nil, false
	}
	s := c.shard(k)
	s.mu.RLock()
	v, ok := s.entries[*k]
	s.mu.RUnlock()
	if !ok || !now.Before(v.expires) {
		return nil, false
	}
	return v, true
}

func (c *tokenCache) put(k *tokenKey, v *verifiedToken, now time.Time) {
	if c == nil || !now.Before(v.expires) {
		return
	}
	s := c.shard(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[*k]; !ok && len(s.entries) >= c.perShard {
		// Sample a few entries (map iteration order is random): drop the
		// expired ones, or the first sampled when none has expired.
		var victim tokenKey
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
	s.entries[*k] = v
}

// len counts entries, expired or not.
func (c *tokenCache) len() int {
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

// dropKey removes every entry verified by the given issuer's key: called
// when a key disappears from its issuer's set.
func (c *tokenCache) dropKey(issuer, keyID string) {
	if c == nil {
		return
	}
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.Lock()
		for k, e := range s.entries {
			if e.issuer == issuer && e.keyID == keyID {
				delete(s.entries, k)
			}
		}
		s.mu.Unlock()
	}
}
