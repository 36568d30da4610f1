package jwks

import (
	"context"
	"fmt"
	"time"

	"github.com/verdict-pdp/verdict/authz/token"
)

// Lookup implements token.KeySet with token.StaticKeys's matching rules.
// A kid in the current set, or kid "", is answered from memory at once. A
// kid the set does not hold is answered with the set's keys without an ID
// (none when it has none) at once when the negative cache knows it or the
// refresh rate limit is spent; otherwise the lookup joins the refresh
// under way or asks Run for one, and waits for it until MissTimeout after
// that refresh began (or until ctx is done), then answers from the set it
// left. A set holding keys without an ID is no exception: a key the
// provider has just published under the token's kid is fetched, not
// missed until the next scheduled refresh. Errors: ErrNotReady before any
// key set is held, ErrStale past MaxStale. Safe for concurrent use.
func (m *Manager) Lookup(ctx context.Context, kid string) ([]token.Key, error) {
	if ks := m.set.Load(); ks != nil {
		if err := m.notStale(); err != nil {
			return nil, err
		}
		if kid == "" {
			return ks.keys, nil
		}
		if keys := ks.byID[kid]; len(keys) > 0 {
			return keys, nil
		}
	}
	return m.miss(ctx, kid)
}

// Fresh implements token.FreshnessChecker: nil when the Manager holds a
// key set (fetched or persisted) that the provider confirmed at most
// MaxStale ago; otherwise an error wrapping ErrNotReady (no key set yet)
// or ErrStale, the cases in which Lookup fails. Unlike Lookup and Ready
// it never asks for a refresh, takes no lock and does not allocate when
// it returns nil: it reads two atomics and the clock. Safe for concurrent
// use; a cache of verified tokens may call it for every hit.
func (m *Manager) Fresh() error {
	if m.set.Load() == nil {
		return fmt.Errorf("%w: issuer %q", ErrNotReady, m.issuer)
	}
	return m.notStale()
}

// notStale reports ErrStale when the provider last confirmed the keys
// longer than MaxStale ago.
func (m *Manager) notStale() error {
	if m.opts.MaxStale < 0 {
		return nil
	}
	if age := m.now().Sub(time.Unix(0, m.confirmed.Load())); age > m.opts.MaxStale {
		return fmt.Errorf("%w: issuer %q: keys last confirmed %s ago (max stale %s)",
			ErrStale, m.issuer, age.Round(time.Second), m.opts.MaxStale)
	}
	return nil
}

// miss handles a kid the current set does not have (or any kid before the
// first set).
func (m *Manager) miss(ctx context.Context, kid string) ([]token.Key, error) {
	now := m.now()
	m.mu.Lock()
	if exp, ok := m.negative[kid]; ok {
		if now.Before(exp) {
			m.st.NegativeHits++
			m.mu.Unlock()
			return m.answer(kid, nil)
		}
		delete(m.negative, kid)
	}
	f := m.inflight
	if f == nil {
		if !m.limiter.AllowN(now, 1) {
			m.st.RateLimited++
			m.mu.Unlock()
			return m.answer(kid, nil)
		}
		f = &flight{done: make(chan struct{}), waitUntil: now.Add(m.opts.MissTimeout), miss: true}
		m.inflight = f
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()

	wait := f.waitUntil.Sub(now)
	if wait <= 0 {
		return m.answer(kid, nil)
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-f.done:
		return m.answer(kid, f)
	case <-t.C:
	case <-ctx.Done():
	}
	return m.answer(kid, nil)
}

// answer looks kid up after a miss. settled is the refresh that completed
// meanwhile, nil when none did; when it succeeded and the set still holds
// no key with that ID, kid goes into the negative cache.
func (m *Manager) answer(kid string, settled *flight) ([]token.Key, error) {
	ks := m.set.Load()
	if ks == nil {
		err := fmt.Errorf("%w: issuer %q", ErrNotReady, m.issuer)
		if settled != nil && settled.err != nil {
			err = fmt.Errorf("%w: issuer %q: %w", ErrNotReady, m.issuer, settled.err)
		}
		return nil, err
	}
	if err := m.notStale(); err != nil {
		return nil, err
	}
	if kid != "" && len(ks.byID[kid]) == 0 && settled != nil && settled.err == nil {
		m.remember(kid)
	}
	return ks.lookup(kid), nil
}

// remember puts kid in the negative cache, dropping expired entries when
// it is full (and giving up when none has expired: the rate limit still
// bounds what reaches the provider).
func (m *Manager) remember(kid string) {
	if len(kid) > maxNegativeKID {
		return // not worth the memory; the rate limit still applies
	}
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.negative == nil {
		m.negative = make(map[string]time.Time)
	}
	if len(m.negative) >= negativeMax {
		for k, exp := range m.negative {
			if !now.Before(exp) {
				delete(m.negative, k)
			}
		}
		if len(m.negative) >= negativeMax {
			return
		}
	}
	m.negative[kid] = now.Add(m.opts.NegativeTTL)
}
