package jwks

import (
	"fmt"
	"slices"
	"time"
)

// Initialized returns a channel closed once Run's first refresh attempt
// has finished (after the persisted set, if any, was read), successfully
// or not.
func (m *Manager) Initialized() <-chan struct{} { return m.initCh }

// Ready reports whether the Manager holds keys fit to serve: an error
// wrapping ErrNotReady (with the last refresh error) before any key set,
// fetched or persisted, is held; one wrapping ErrStale past MaxStale; else
// nil. Safe for concurrent use.
func (m *Manager) Ready() error {
	if m.set.Load() == nil {
		m.mu.Lock()
		last := m.st.LastError
		m.mu.Unlock()
		if last != "" {
			return fmt.Errorf("%w: issuer %q: %s", ErrNotReady, m.issuer, last)
		}
		return fmt.Errorf("%w: issuer %q", ErrNotReady, m.issuer)
	}
	return m.notStale()
}

// Counts counts refreshes by cause.
type Counts struct {
	// Schedule: the first fetch, scheduled refreshes and their retries.
	Schedule uint64 `json:"schedule"`
	// UnknownKID: refreshes asked for by a lookup of an unknown kid.
	UnknownKID uint64 `json:"unknown_kid"`
}

// Status describes a Manager's keys and refreshes, for /v1/status and
// metrics.
type Status struct {
	// Issuer is Options.Issuer.
	Issuer string `json:"issuer"`
	// URL is the key set URL in use (from discovery once it succeeded),
	// without query or credentials.
	URL string `json:"url,omitempty"`
	// Ready is Ready() == nil; NotReady says why not.
	Ready    bool   `json:"ready"`
	NotReady string `json:"not_ready,omitempty"`
	// Source says where the serving keys came from: "fetched" or
	// "persisted"; empty before any.
	Source string `json:"source,omitempty"`
	// KeyIDs are the serving keys' IDs, sorted ("" for a key without one).
	KeyIDs []string `json:"key_ids,omitempty"`
	// FetchedAt is when the serving set was fetched (for a persisted set,
	// when it was saved).
	FetchedAt time.Time `json:"fetched_at,omitzero"`
	// ConfirmedAt is when the provider last confirmed the serving set (a
	// successful refresh, changed or not; for a persisted set, its save
	// time). Age is now minus ConfirmedAt; MaxStale applies to it.
	ConfirmedAt time.Time     `json:"confirmed_at,omitzero"`
	Age         time.Duration `json:"-"`
	// LastAttempt is when the last refresh started; LastSuccess when one
	// last succeeded.
	LastAttempt time.Time `json:"last_attempt,omitzero"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last refresh (or persisted set) error, cleared by a
	// success.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// NextRefresh is when Run will refresh next, unless a kid misses first.
	NextRefresh time.Time `json:"next_refresh,omitzero"`
	// Refreshes counts refreshes that reached the provider, RefreshErrors
	// the failed ones, by cause.
	Refreshes     Counts `json:"refreshes"`
	RefreshErrors Counts `json:"refresh_errors"`
	// RateLimited counts unknown-kid lookups that did not refresh because
	// the rate limit was spent; NegativeHits those answered by the
	// negative cache.
	RateLimited  uint64 `json:"rate_limited"`
	NegativeHits uint64 `json:"negative_hits"`
	// KeysRemoved counts keys that left the set.
	KeysRemoved uint64 `json:"keys_removed"`
}

// Status returns a copy of the Manager's status. Safe for concurrent use.
func (m *Manager) Status() Status {
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	st.Issuer = m.issuer
	if err := m.Ready(); err != nil {
		st.NotReady = err.Error()
	} else {
		st.Ready = true
	}
	if ks := m.set.Load(); ks != nil {
		st.Source, st.FetchedAt = ks.source, ks.fetched
		st.ConfirmedAt = time.Unix(0, m.confirmed.Load())
		st.Age = m.now().Sub(st.ConfirmedAt)
		st.KeyIDs = make([]string, 0, len(ks.keys))
		for _, k := range ks.keys {
			st.KeyIDs = append(st.KeyIDs, k.ID)
		}
		slices.Sort(st.KeyIDs)
	}
	return st
}
