package jwks

import (
	"cmp"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/verdict-pdp/verdict/internal/backoff"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
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
	// replicas started together do not refresh in step (never lengthens
	// them: that would keep keys past the provider's cache lifetime).
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
	// own, trusting RootCAs (or the system roots) with TLS 1.2 at least,
	// refusing redirects from https to http; Run closes its idle
	// connections when it returns.
	HTTPClient *http.Client
	// RootCAs returns the CA certificates trusted instead of the system
	// roots for the provider's TLS certificate, asked before every request
	// (a rotated CA file is trusted from the next connection on); nil
	// means the system roots. Only with a nil HTTPClient.
	RootCAs func() *x509.CertPool
	// Timeout bounds each request, body included; 0 means 10 s. It applies
	// to an injected HTTPClient too.
	Timeout time.Duration
	// MinRefresh and MaxRefresh bound the time between scheduled refreshes,
	// which is otherwise the provider's Cache-Control max-age (minus Age)
	// or Expires; without either, MaxRefresh. 0 means 1 min and 1 h.
	// After a failed refresh the retry waits 1 s, doubling, up to
	// MinRefresh, each wait shortened by up to 10 % (as scheduled ones
	// are), so that replicas failing together do not retry in step.
	MinRefresh, MaxRefresh time.Duration
	// UnknownKIDInterval and UnknownKIDBurst limit refreshes triggered by
	// an unknown kid: a token bucket of UnknownKIDBurst refreshes refilled
	// one per UnknownKIDInterval. 0 means 10 s and 1. A durations-and-burst
	// pair rather than a rate.Limit, so that the zero value can mean the
	// default and a config file can state it.
	UnknownKIDInterval time.Duration
	UnknownKIDBurst    int
	// MissTimeout bounds how long lookups of unknown kids wait for a
	// refresh: until MissTimeout after it began, so a lookup that joins a
	// refresh under way waits for what is left of that; 0 means 2 s. The
	// refresh itself goes on (bounded by Timeout) and its keys serve later
	// lookups.
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
	// (one file per issuer and key source, mode 0600) and read by Run
	// before its first fetch, so that a cold start serves while the
	// provider is down. A persisted set older than MaxStale is not used,
	// nor one fetched from another URL (or by discovery, for a URL), nor a
	// file that is not a regular file or is larger than twice MaxBytes.
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

// New validates opts and returns a Manager. It starts no goroutine and
// performs no network I/O.
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
		if !httpfetch.ValidURL(opts.URL) {
			bad("url %q must be an absolute http(s) URL", httpfetch.Redact(opts.URL))
		}
	case opts.Discovery:
		if !httpfetch.ValidURL(opts.Issuer) {
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
	opts.Timeout = cmp.Or(opts.Timeout, DefaultTimeout)
	opts.MinRefresh = cmp.Or(opts.MinRefresh, DefaultMinRefresh)
	opts.MaxRefresh = cmp.Or(opts.MaxRefresh, DefaultMaxRefresh)
	opts.UnknownKIDInterval = cmp.Or(opts.UnknownKIDInterval, DefaultUnknownKIDInterval)
	opts.UnknownKIDBurst = cmp.Or(opts.UnknownKIDBurst, DefaultUnknownKIDBurst)
	opts.MissTimeout = cmp.Or(opts.MissTimeout, DefaultMissTimeout)
	opts.NegativeTTL = cmp.Or(opts.NegativeTTL, DefaultNegativeTTL)
	opts.MaxStale = cmp.Or(opts.MaxStale, DefaultMaxStale)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, DefaultMaxBytes)
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
		retry:   backoff.Exponential{Min: min(retryMin, opts.MinRefresh), Max: opts.MinRefresh},
		kick:    make(chan struct{}, 1),
		initCh:  make(chan struct{}),
		jwksURL: opts.URL,
	}
	if m.client == nil {
		m.client, m.ownClient = httpfetch.NewClient(opts.RootCAs), true
	} else if opts.RootCAs != nil {
		bad("RootCAs are for the manager's own client; configure the injected HTTP client's TLS instead")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.log = cmp.Or(m.log, slog.New(slog.DiscardHandler)).With(slog.String("issuer", opts.Issuer))
	if m.now == nil {
		m.now = time.Now
	}
	if opts.PersistDir != "" {
		m.persist = persistPath(opts.PersistDir, opts.Issuer, opts.URL)
	}
	m.st.URL = httpfetch.Redact(opts.URL)
	if u := cmp.Or(opts.URL, opts.Issuer); plainHTTP(u) {
		// Not refused: inside a mesh whose sidecars encrypt, plain HTTP
		// to the provider is common. But anyone on the way can change
		// the keys, so say so once.
		m.log.Warn("keys are fetched over plain http: anyone on the network path can replace them",
			slog.String("url", httpfetch.Redact(u)))
	}
	return m, nil
}

// httpsURL reports whether u is an https URL, its scheme written in any
// case (HTTPS://, as Go fetches it).
func httpsURL(u string) bool {
	p, err := url.Parse(u)
	return err == nil && p.Scheme == "https"
}

// plainHTTP reports whether u is an http URL to a host other than the
// loopback.
func plainHTTP(u string) bool {
	p, err := url.Parse(u)
	if err != nil || !strings.EqualFold(p.Scheme, "http") {
		return false
	}
	host := p.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil {
		return !ip.IsLoopback()
	}
	return !strings.EqualFold(host, "localhost")
}
