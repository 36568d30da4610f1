package jwks

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/verdict-pdp/verdict/authz/token"
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
	// key set or holds no usable key; the previous keys keep serving.
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

// Defaults for Options fields left zero.
const (
	DefaultMinRefresh         = time.Minute
	DefaultMaxRefresh         = time.Hour
	DefaultUnknownKIDInterval = 10 * time.Second
	DefaultUnknownKIDBurst    = 1
	DefaultMissTimeout        = 2 * time.Second
	DefaultNegativeTTL        = time.Minute
	DefaultMaxStale           = 24 * time.Hour
	DefaultMaxBytes           = 1 << 20
	DefaultTimeout            = 10 * time.Second
)

const (
	// retryMin is the wait after a first failed refresh, doubled for every
	// further failure up to MinRefresh.
	retryMin = time.Second
	// negativeMax bounds the negative cache, and maxNegativeKID the kids
	// it holds.
	negativeMax    = 4096
	maxNegativeKID = 256
	// jitter shortens scheduled waits by up to this fraction, so that
	// replicas started together do not refresh in step.
	jitter = 0.1
)

// Options configures a Manager. Every zero value means the documented default.
type Options struct {
	// Issuer is the issuer whose keys these are, exactly as in tokens' iss
	// (required). It names the Manager in logs, status and OnKeysRemoved,
	// and with Discovery it is where the discovery document is looked up
	// and what that document must name.
	Issuer string
	// URL is the key set's http(s) URL. Exactly one of URL and Discovery.
	URL string
	// Discovery fetches Issuer + "/.well-known/openid-configuration"
	// (OpenID Connect Discovery), refuses it unless its issuer equals
	// Issuer exactly (ErrIssuerMismatch), and uses its jwks_uri (which must
	// be https when Issuer is). The document is fetched again after a key
	// set fetch fails, so a moved jwks_uri is followed.
	Discovery bool
	// HTTPClient sends the requests; nil means a client of the Manager's
	// own, trusting CAFile (or the system roots) with TLS 1.2 at least,
	// refusing redirects from https to http; Run closes its idle
	// connections when it returns.
	HTTPClient *http.Client
	// CAFile is a PEM file of CA certificates trusted instead of the
	// system roots for the provider's TLS certificate. Only with a nil
	// HTTPClient. Read by New.
	CAFile string
	// Timeout bounds each request, body included; 0 means 10 s. It applies
	// to an injected HTTPClient too.
	Timeout time.Duration
	// MinRefresh and MaxRefresh bound the time between scheduled refreshes,
	// which is otherwise the provider's Cache-Control max-age (minus Age)
	// or Expires; without either, MaxRefresh. 0 means 1 min and 1 h.
	// After a failed refresh the retry waits 1 s, doubling, up to
	// MinRefresh.
	MinRefresh, MaxRefresh time.Duration
	// UnknownKIDInterval and UnknownKIDBurst limit refreshes triggered by
	// an unknown kid: a token bucket of UnknownKIDBurst refreshes refilled
	// one per UnknownKIDInterval. 0 means 10 s and 1. A durations-and-burst
	// pair rather than a rate.Limit, so that the zero value can mean the
	// default and a config file can state it.
	UnknownKIDInterval time.Duration
	UnknownKIDBurst    int
	// MissTimeout bounds how long a lookup of an unknown kid waits for the
	// refresh it triggered or joined; 0 means 2 s. The refresh itself goes
	// on (bounded by Timeout) and its keys serve later lookups.
	MissTimeout time.Duration
	// NegativeTTL is how long a kid that a completed refresh did not find
	// is answered "unknown" without a new refresh; 0 means 1 min. Any
	// change of the key set clears it.
	NegativeTTL time.Duration
	// MaxStale is how long the last good keys keep serving after the
	// provider last confirmed them (a refresh that succeeded, or the save
	// time of a persisted set); beyond it Lookup, Ready and Fresh fail
	// with ErrStale, so tokens are denied (keys_unavailable), cached
	// verifications included where the cache asks Fresh (through
	// token.Verifier.KeysFresh). 0 means 24 h; a
	// negative value serves the last keys forever. It must not be shorter
	// than MaxRefresh.
	MaxStale time.Duration
	// MaxBytes refuses a key set or discovery document larger than this;
	// 0 means 1 MiB.
	MaxBytes int64
	// PersistDir, when set, is where the last good key set is written
	// (one file per issuer, mode 0600) and read by Run before its first
	// fetch, so that a cold start serves while the provider is down. A
	// persisted set older than MaxStale is not used.
	PersistDir string
	// OnKeysRemoved, when set, is called from Run's goroutine after a new
	// key set has replaced one that held keys the new one does not (or
	// holds with other material or another pinned algorithm), with the
	// issuer and the IDs of those keys ("" for a key without kid). It
	// should return quickly; Lookup may be called from it.
	OnKeysRemoved func(issuer string, kids []string)
	// Logger receives refresh logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock for staleness, schedules, the rate limit and the
	// negative cache; nil means time.Now.
	Now func() time.Time
	// After waits between refreshes; nil means a real timer. Tests inject
	// one to step through refreshes without sleeping. MissTimeout is
	// always real time.
	After func(d time.Duration) <-chan time.Time
}

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
	persist   string // file path; "" when not persisting
	jitter    float64

	set       atomic.Pointer[keySet]
	confirmed atomic.Int64 // UnixNano when the provider last confirmed set

	kick    chan struct{} // capacity 1: a lookup asks Run for a refresh
	initCh  chan struct{}
	initOne sync.Once

	mu       sync.Mutex
	running  bool
	inflight *flight // the refresh under way or asked for; nil when none
	negative map[string]time.Time
	jwksURL  string // in use; "" until discovered
	st       Status // counters and times; Issuer, Ready and keys filled by Status
}

var (
	_ token.KeySet           = (*Manager)(nil)
	_ token.FreshnessChecker = (*Manager)(nil)
)

// flight is one refresh that lookups can wait for.
type flight struct {
	done chan struct{}
	miss bool  // asked for by an unknown kid
	err  error // set before done is closed
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

// New validates opts and returns a Manager. It starts no goroutine and
// performs no network I/O; it reads Options.CAFile.
func New(opts Options) (*Manager, error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: issuer %q: %s", ErrOptions, opts.Issuer, fmt.Sprintf(format, args...)))
	}
	if opts.Issuer == "" {
		bad("issuer is required")
	}
	switch {
	case opts.URL != "" && opts.Discovery:
		bad("url and discovery are exclusive")
	case opts.URL != "":
		if !httpURL(opts.URL) {
			bad("url %q must be an absolute http(s) URL", opts.URL)
		}
	case opts.Discovery:
		if !httpURL(opts.Issuer) {
			bad("discovery needs an issuer that is an absolute http(s) URL")
		}
	default:
		bad("one of url and discovery is required")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"timeout", opts.Timeout}, {"min refresh", opts.MinRefresh}, {"max refresh", opts.MaxRefresh},
		{"unknown kid interval", opts.UnknownKIDInterval}, {"miss timeout", opts.MissTimeout},
		{"negative ttl", opts.NegativeTTL}} {
		if d.v < 0 {
			bad("%s %s is negative", d.name, d.v)
		}
	}
	if opts.UnknownKIDBurst < 0 || opts.MaxBytes < 0 {
		bad("negative unknown kid burst or max bytes")
	}
	opts.Timeout = or(opts.Timeout, DefaultTimeout)
	opts.MinRefresh = or(opts.MinRefresh, DefaultMinRefresh)
	opts.MaxRefresh = or(opts.MaxRefresh, DefaultMaxRefresh)
	opts.UnknownKIDInterval = or(opts.UnknownKIDInterval, DefaultUnknownKIDInterval)
	opts.UnknownKIDBurst = or(opts.UnknownKIDBurst, DefaultUnknownKIDBurst)
	opts.MissTimeout = or(opts.MissTimeout, DefaultMissTimeout)
	opts.NegativeTTL = or(opts.NegativeTTL, DefaultNegativeTTL)
	opts.MaxStale = or(opts.MaxStale, DefaultMaxStale)
	opts.MaxBytes = or(opts.MaxBytes, DefaultMaxBytes)
	if opts.MaxRefresh < opts.MinRefresh {
		bad("max refresh %s is shorter than min refresh %s", opts.MaxRefresh, opts.MinRefresh)
	}
	if opts.MaxStale > 0 && opts.MaxStale < opts.MaxRefresh {
		bad("max stale %s is shorter than max refresh %s: healthy keys would go stale", opts.MaxStale, opts.MaxRefresh)
	}
	m := &Manager{
		issuer:  opts.Issuer,
		opts:    opts,
		client:  opts.HTTPClient,
		log:     opts.Logger,
		now:     opts.Now,
		limiter: rate.NewLimiter(rate.Every(opts.UnknownKIDInterval), opts.UnknownKIDBurst),
		jitter:  jitter,
		kick:    make(chan struct{}, 1),
		initCh:  make(chan struct{}),
		jwksURL: opts.URL,
	}
	if m.client == nil {
		client, err := newClient(opts.CAFile)
		if err != nil {
			bad("%v", err)
		}
		m.client, m.ownClient = client, true
	} else if opts.CAFile != "" {
		bad("ca file is for the manager's own client; configure the injected HTTP client's TLS instead")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With(slog.String("issuer", opts.Issuer))
	if m.now == nil {
		m.now = time.Now
	}
	if opts.PersistDir != "" {
		m.persist = persistPath(opts.PersistDir, opts.Issuer)
	}
	m.st.URL = redactURL(opts.URL)
	return m, nil
}

func or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// newClient is the Manager's own HTTP client: a clone of the default
// transport, TLS 1.2 at least, the CAs of caFile when set, and no
// redirect from https to http.
func newClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificate found", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 5 {
				return errors.New("too many redirects")
			}
			if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
				return errors.New("redirect from https to http refused")
			}
			return nil
		},
	}, nil
}

// Issuer returns Options.Issuer.
func (m *Manager) Issuer() string { return m.issuer }

// Lookup implements token.KeySet with token.StaticKeys's matching rules.
// A kid in the current set, or kid "", is answered from memory at once. An
// unknown kid is answered "unknown" (no keys, nil error) at once when the
// negative cache knows it or the refresh rate limit is spent; otherwise the
// lookup joins the refresh under way or asks Run for one, and waits for it
// up to MissTimeout (or until ctx is done). Errors: ErrNotReady before any
// key set is held, ErrStale past MaxStale. Safe for concurrent use.
func (m *Manager) Lookup(ctx context.Context, kid string) ([]token.Key, error) {
	if ks := m.set.Load(); ks != nil {
		if err := m.notStale(); err != nil {
			return nil, err
		}
		if keys := ks.lookup(kid); len(keys) > 0 || kid == "" {
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
			return nil, nil
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
		f = &flight{done: make(chan struct{}), miss: true}
		m.inflight = f
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	m.mu.Unlock()

	t := time.NewTimer(m.opts.MissTimeout)
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
// meanwhile, nil when none did; when it succeeded and kid is still
// unknown, kid goes into the negative cache.
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
	keys := ks.lookup(kid)
	if len(keys) == 0 && kid != "" && settled != nil && settled.err == nil {
		m.remember(kid)
	}
	return keys, nil
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

// Run reads the persisted key set (if any), fetches the keys at once, and
// then refreshes them on schedule and whenever a lookup of an unknown kid
// asks, until ctx is done. Failures are logged and shown in Status; the
// last good keys keep serving. Run returns nil when ctx is done, after
// every request it made has finished, or ErrRunning when the Manager is
// already running. It starts no goroutine of its own.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.running {
		m.mu.Unlock()
		return ErrRunning
	}
	m.running = true
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()
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
			next = min(retryMin<<min(failures-1, 30), m.opts.MinRefresh)
		} else {
			failures = 0
		}
		m.mu.Lock()
		m.st.NextRefresh = m.now().Add(next)
		m.mu.Unlock()
		if !m.wait(ctx, next) {
			return nil
		}
	}
}

// wait returns true when it is time to refresh: next has passed or a
// lookup asked; false when ctx is done.
func (m *Manager) wait(ctx context.Context, d time.Duration) bool {
	var c <-chan time.Time
	if m.opts.After != nil {
		c = m.opts.After(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		c = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-c:
	case <-m.kick:
	}
	return true
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
		f = &flight{done: make(chan struct{})}
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
		if m.set.Load() != nil {
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
	if err != nil {
		return 0, err
	}
	m.install(newKeySet(keys, res.body, res.etag, "fetched", start), start)
	m.save(res.body, res.etag, start)
	return next, nil
}

// parse parses a key set leniently, logging skipped entries, and refuses
// one with no usable key.
func (m *Manager) parse(body []byte) ([]token.Key, error) {
	keys, skipped, err := token.ParseJWKSLenient(body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrKeySet, err)
	}
	for _, s := range skipped {
		m.log.Warn("jwks key skipped", slog.String("error", s.Error()))
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no usable signing key (%d skipped)", ErrKeySet, len(skipped))
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
	if m.jitter > 0 {
		d = max(m.opts.MinRefresh, d-time.Duration(rand.Float64()*m.jitter*float64(d)))
	}
	return d
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
	m.log.Info("jwks loaded", slog.String("source", ks.source), slog.Any("kids", ids))
	if len(removed) > 0 {
		m.log.Info("jwks keys removed", slog.Any("kids", removed))
		if m.opts.OnKeysRemoved != nil {
			m.opts.OnKeysRemoved(m.issuer, removed)
		}
	}
}

// removedKeys returns the sorted, distinct IDs of old's keys that next does
// not hold with the same ID, pinned algorithm and public key.
func removedKeys(old, next *keySet) []string {
	if old == nil {
		return nil
	}
	var out []string
	for _, k := range old.keys {
		if !holds(next, k) && !slices.Contains(out, k.ID) {
			out = append(out, k.ID)
		}
	}
	slices.Sort(out)
	return out
}

type equaler interface{ Equal(x crypto.PublicKey) bool }

func holds(ks *keySet, k token.Key) bool {
	candidates := ks.noID
	if k.ID != "" {
		candidates = ks.byID[k.ID]
	}
	for _, c := range candidates {
		if c.Algorithm != k.Algorithm {
			continue
		}
		if e, ok := c.Public.(equaler); ok && e.Equal(k.Public) {
			return true
		}
	}
	return false
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}
