package jwks

import (
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/backoff"
)

// Sentinel errors of package jwks. Errors wrap one of them, and the cause
// where there is one.
var (
	// ErrOptions is wrapped by New's errors about invalid options.
	ErrOptions = errors.New("jwks: invalid options")
	// ErrFetch is wrapped when the key set or discovery document cannot be
	// fetched: a network error, a timeout, an unexpected status, or a body
	// over Options.MaxBytes.
	ErrFetch = errors.New("jwks: fetch failed")
	// ErrDiscovery is wrapped when the discovery document is unusable.
	ErrDiscovery = errors.New("jwks: discovery failed")
	// ErrIssuerMismatch is wrapped (with ErrDiscovery) when the discovery
	// document's issuer is not exactly the configured issuer.
	ErrIssuerMismatch = errors.New("discovery issuer does not match")
	// ErrKeySet is wrapped when a fetched or persisted document is not a
	// key set or holds no usable key. The previous keys keep serving after
	// a document that is not a key set; a key set with no usable key
	// revokes them.
	ErrKeySet = errors.New("jwks: unusable key set")
	// ErrPersist is wrapped when the persisted key set cannot be read or
	// written.
	ErrPersist = errors.New("jwks: persisted key set")
	// ErrNotReady is wrapped by Ready, Fresh and Lookup before any key set
	// is held.
	ErrNotReady = errors.New("jwks: no key set yet")
	// ErrStale is wrapped by Ready, Fresh and Lookup when the provider has
	// not confirmed the keys for longer than Options.MaxStale.
	ErrStale = errors.New("jwks: key set is stale")
	// ErrRunning is returned by Run when the Manager is already running.
	ErrRunning = errors.New("jwks: already running")
)

// Manager is a token.KeySet backed by a remote JWKS. It is safe for
// concurrent use; Run must be running for the keys to load and refresh
// (Lookup never fetches by itself: it asks Run). The zero value is not
// usable; build one with New.
type Manager struct {
	issuer    string
	opts      Options
	client    *http.Client
	ownClient bool
	log       *slog.Logger
	now       func() time.Time
	limiter   *rate.Limiter
	persist   string              // file path; "" when not persisting
	jitter    float64             // scheduled waits are shortened by up to this fraction
	retry     backoff.Exponential // waits after failed refreshes

	set       atomic.Pointer[keySet]
	confirmed atomic.Int64 // UnixNano when the provider last confirmed set

	kick    chan struct{} // capacity 1: a lookup asks Run for a refresh
	initCh  chan struct{}
	initOne sync.Once

	running atomic.Bool // Run is running

	mu       sync.Mutex
	inflight *flight // the refresh under way or asked for; nil when none
	negative map[string]time.Time
	jwksURL  string // in use; "" until discovered
	st       Status // counters and times; Issuer, Ready and keys filled by Status
}

var (
	_ token.KeySet           = (*Manager)(nil)
	_ token.FreshnessChecker = (*Manager)(nil)
)

// flight is one refresh that lookups can wait for, until done or until
// MissTimeout after the flight began (waitUntil), whichever is first: a
// refresh hung on a slow provider makes each lookup that misses wait for
// what is left of that, not MissTimeout each, so that unknown kids sent
// while it hangs do not each hold their decision for MissTimeout.
type flight struct {
	done      chan struct{}
	waitUntil time.Time
	miss      bool  // asked for by an unknown kid
	err       error // set before done is closed
}

// keySet is an immutable set of keys, indexed.
type keySet struct {
	keys    []token.Key
	byID    map[string][]token.Key
	noID    []token.Key
	raw     []byte
	etag    string
	source  string // "fetched" or "persisted"
	fetched time.Time
}

func newKeySet(keys []token.Key, raw []byte, etag, source string, at time.Time) *keySet {
	ks := &keySet{keys: keys, byID: make(map[string][]token.Key, len(keys)), raw: raw, etag: etag, source: source, fetched: at}
	for _, k := range keys {
		if k.ID == "" {
			ks.noID = append(ks.noID, k)
			continue
		}
		ks.byID[k.ID] = append(ks.byID[k.ID], k)
	}
	return ks
}

// lookup mirrors token.StaticKeys.Lookup: every key for kid "", else the
// keys with that ID, else the keys without an ID.
func (ks *keySet) lookup(kid string) []token.Key {
	if kid == "" {
		return ks.keys
	}
	if keys := ks.byID[kid]; len(keys) > 0 {
		return keys
	}
	return ks.noID
}

// Issuer returns Options.Issuer.
func (m *Manager) Issuer() string { return m.issuer }
