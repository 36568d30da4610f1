package jwks

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/backoff"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// Run reads the persisted key set (if any), fetches the keys at once, and
// then refreshes them on schedule and whenever a lookup of an unknown kid
// asks, until ctx is done. Failures are logged and shown in Status; the
// last good keys keep serving. Run returns nil when ctx is done, after
// every request it made has finished, or ErrRunning when the Manager is
// already running. It starts no goroutine of its own.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)
	if m.ownClient {
		defer m.client.CloseIdleConnections()
	}
	if err := m.loadPersisted(); err != nil {
		m.failed(err, m.now())
		m.log.Warn("persisted jwks not used", slog.String("error", err.Error()))
	}
	failures := 0
	for initial := true; ; initial = false {
		next, err := m.refresh(ctx, initial)
		m.initOne.Do(func() { close(m.initCh) })
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			failures++
			// Shortened by up to the jitter too: replicas that failed
			// together (the provider down) come back apart.
			next = backoff.Spread(m.retry.Delay(failures), m.jitter, 0)
		} else {
			failures = 0
		}
		m.mu.Lock()
		m.st.NextRefresh = m.now().Add(next)
		m.mu.Unlock()
		// A lookup of an unknown kid cuts the wait short through kick.
		if !backoff.Wait(ctx, next, m.opts.After, m.kick) {
			return nil
		}
	}
}

// refresh fetches the key set once, installs it when it changed, and
// returns the time until the next scheduled refresh. It answers the
// flight that lookups wait for (creating it when none asked). The initial
// refresh counts as scheduled even when a lookup asked for it first.
func (m *Manager) refresh(ctx context.Context, initial bool) (next time.Duration, err error) {
	start := m.now()
	m.mu.Lock()
	f := m.inflight
	if f == nil {
		f = &flight{done: make(chan struct{}), waitUntil: start.Add(m.opts.MissTimeout)}
		m.inflight = f
	}
	select {
	case <-m.kick: // this refresh answers it
	default:
	}
	miss := f.miss && !initial
	if miss {
		m.st.Refreshes.UnknownKID++
	} else {
		m.st.Refreshes.Schedule++
	}
	m.st.LastAttempt = start
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		f.err = err
		m.inflight = nil
		m.mu.Unlock()
		close(f.done)
	}()

	next, err = m.fetchAndInstall(ctx, start)
	if err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		m.mu.Lock()
		if miss {
			m.st.RefreshErrors.UnknownKID++
		} else {
			m.st.RefreshErrors.Schedule++
		}
		m.mu.Unlock()
		m.failed(err, start)
		attrs := []any{slog.String("error", err.Error())}
		if ks := m.set.Load(); ks != nil && len(ks.keys) > 0 {
			attrs = append(attrs, slog.Bool("serving_last_good", true))
		}
		m.log.Warn("jwks refresh failed", attrs...)
		return 0, err
	}
	m.mu.Lock()
	m.st.LastSuccess = m.now()
	m.st.LastError, m.st.LastErrorAt = "", time.Time{}
	m.mu.Unlock()
	return next, nil
}

func (m *Manager) failed(err error, at time.Time) {
	m.mu.Lock()
	m.st.LastError, m.st.LastErrorAt = err.Error(), at
	m.mu.Unlock()
}

// fetchAndInstall performs one refresh.
func (m *Manager) fetchAndInstall(ctx context.Context, start time.Time) (time.Duration, error) {
	u, err := m.keySetURL(ctx)
	if err != nil {
		return 0, err
	}
	cur := m.set.Load()
	etag := ""
	if cur != nil {
		etag = cur.etag
	}
	res, err := m.fetch(ctx, u, etag)
	if err != nil {
		if m.opts.Discovery {
			m.mu.Lock()
			m.jwksURL = "" // discover again next time
			m.mu.Unlock()
		}
		return 0, err
	}
	next := m.schedule(res.lifetime, res.hasLifetime)
	if res.notModified || (cur != nil && string(res.body) == string(cur.raw)) {
		m.confirm(start)
		m.save(cur.raw, res.etag, start)
		if res.etag != cur.etag || cur.source != "fetched" {
			m.set.Store(newKeySet(cur.keys, cur.raw, res.etag, "fetched", cur.fetched))
		}
		m.log.Debug("jwks unchanged", slog.Duration("next", next))
		return next, nil
	}
	keys, err := m.parse(res.body)
	if errors.Is(err, errNoUsableKey) {
		m.revokeAll(res.body, start)
	}
	if err != nil {
		return 0, err
	}
	m.install(newKeySet(keys, res.body, res.etag, "fetched", start), start)
	m.save(res.body, res.etag, start)
	return next, nil
}

// errNoUsableKey is wrapped (with ErrKeySet) when a document is a key set
// but holds no key that can verify a token.
var errNoUsableKey = errors.New("no usable signing key")

// revokeAll answers a key set that holds no usable key ({"keys": []},
// only encryption keys, only algorithms Verdict does not verify): it is the
// provider's word on what it publishes, not an outage, so the keys in
// service that it dropped (all of them) are revoked at once, cached
// verifications included, rather than served on as the last good keys
// are when the provider cannot be reached or answers something that is
// not a key set. The document is persisted too, so that a restart does not
// bring the revoked keys back. The refresh still fails: the issuer has no
// key until a usable set comes.
//
// With no keys in service yet (a cold start), there is nothing to revoke:
// the issuer stays without a key set, not ready, as when the provider
// cannot be reached, rather than ready with no key.
func (m *Manager) revokeAll(body []byte, at time.Time) {
	switch cur := m.set.Load(); {
	case cur == nil:
	case len(cur.keys) > 0:
		// raw and etag stay empty: the next refresh downloads and reads the
		// document again, and fails again until it holds a usable key.
		m.install(newKeySet(nil, nil, "", "fetched", at), at)
	default:
		m.confirm(at)
	}
	m.save(body, "", at)
}

// maxSkippedLogged bounds the skipped entries of one key set logged one by
// one: a set of a megabyte can hold tens of thousands, and is read again at
// every refresh. The rest are counted in one more line.
const maxSkippedLogged = 8

// parse parses a key set leniently, logging skipped entries (the first
// maxSkippedLogged, then how many more), and refuses one with no usable
// key (errNoUsableKey).
func (m *Manager) parse(body []byte) ([]token.Key, error) {
	keys, skipped, err := token.ParseJWKSLenient(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	}
	for i, s := range skipped {
		if i == maxSkippedLogged {
			m.log.Warn("jwks key skipped", slog.Int("more", len(skipped)-i))
			break
		}
		m.log.Warn("jwks key skipped", slog.String("error", s.Error()))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: %w (%d skipped)", ErrKeySet, errNoUsableKey, len(skipped))
	}
	return keys, nil
}

// schedule turns the provider's cache lifetime into the wait before the
// next refresh: clamped to [MinRefresh, MaxRefresh], MaxRefresh when the
// provider said nothing, then shortened by up to the jitter fraction (but
// not below MinRefresh).
func (m *Manager) schedule(lifetime time.Duration, ok bool) time.Duration {
	d := m.opts.MaxRefresh
	if ok {
		d = min(max(lifetime, m.opts.MinRefresh), m.opts.MaxRefresh)
	}
	return max(m.opts.MinRefresh, backoff.Spread(d, m.jitter, 0))
}

func (m *Manager) confirm(at time.Time) { m.confirmed.Store(at.UnixNano()) }

// install makes ks the serving set, then reports removed keys.
func (m *Manager) install(ks *keySet, confirmedAt time.Time) {
	m.confirm(confirmedAt)
	old := m.set.Swap(ks)
	removed := removedKeys(old, ks)
	m.mu.Lock()
	clear(m.negative)
	m.st.KeysRemoved += uint64(len(removed))
	m.mu.Unlock()
	ids := make([]string, 0, len(ks.keys))
	for _, k := range ks.keys {
		ids = append(ids, k.ID)
	}
	m.log.Info("jwks loaded", append([]any{slog.String("source", ks.source)}, kidsAttrs(ids)...)...)
	if len(removed) > 0 {
		m.log.Info("jwks keys removed", kidsAttrs(removed)...)
		if m.opts.OnKeysRemoved != nil {
			m.opts.OnKeysRemoved(m.issuer, removed)
		}
	}
}

// Bounds on the kids a log line lists: a key set of a megabyte holds
// thousands of keys, or a kid of most of a megabyte, and every refresh
// that changes the set logs its kids.
const (
	maxLoggedKIDs     = 32
	maxLoggedKIDBytes = 128
)

// kidsAttrs returns the log attributes listing ids: "kids", the first
// maxLoggedKIDs of them, each cut to maxLoggedKIDBytes, and "kids_more",
// how many more there are, when there are more.
func kidsAttrs(ids []string) []any {
	shown := make([]string, min(len(ids), maxLoggedKIDs))
	for i := range shown {
		shown[i] = printable.Cut(ids[i], maxLoggedKIDBytes)
	}
	attrs := []any{slog.Any("kids", shown)}
	if more := len(ids) - len(shown); more > 0 {
		attrs = append(attrs, slog.Int("kids_more", more))
	}
	return attrs
}

// removedKeys returns the sorted, distinct IDs of old's keys that next does
// not hold with the same ID, pinned algorithm and public key
// (token.RemovedKeys).
func removedKeys(old, next *keySet) []string {
	if old == nil {
		return nil
	}
	out := token.RemovedKeys(old.keys, next.keys)
	slices.Sort(out)
	return out
}
