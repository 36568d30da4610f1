// Package remote provides Poller, a policy source that fetches an OPA bundle
// (.tar.gz) over HTTP(S) from any plain web server or object store and
// delivers it to a sink whenever it changes.
//
// Polling is cheap when nothing changed: the Poller sends If-None-Match with
// the last ETag and a 304 Not Modified costs no download. Intervals are
// jittered so that many replicas do not poll in step, and failures back off
// exponentially. Every request has a timeout and the body a size limit. With
// a verification key, only bundles whose .signatures.json verifies (OPA's
// format, as written by `opa build --signing-key`) are activated. The last
// good bundle is persisted to a local directory, so that a restart serves
// it while the bundle server is down; the first poll after a start
// downloads the bundle whole (the server's 304 would vouch for whatever the
// file holds).
//
// A server that keeps failing is logged once per distinct failure, not on
// every poll, and counted the same way (bundles.Status.ReloadErrors); the
// first good poll after it logs "policy recovered".
package remote

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/record"
	"github.com/verdict-pdp/verdict/internal/backoff"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// Sentinel errors of package remote.
var (
	// ErrOptions is wrapped by constructor errors about invalid options.
	ErrOptions = errors.New("remote: invalid options")
	// ErrFetch is wrapped when the bundle cannot be fetched: a network
	// error, a timeout or an unexpected HTTP status.
	ErrFetch = errors.New("remote: fetch failed")
	// ErrPersist is wrapped when the persisted bundle cannot be read or
	// written.
	ErrPersist = errors.New("remote: persisted bundle")
	// ErrRunning is returned by Run when the Poller is already running.
	ErrRunning = errors.New("remote: already running")
)

const (
	defaultInterval   = 30 * time.Second
	defaultJitter     = 0.1
	defaultMinBackoff = time.Second
	defaultMaxBackoff = 5 * time.Minute
	defaultTimeout    = 30 * time.Second
)

// Options configures a Poller. Every zero value means the documented default.
type Options struct {
	// URL is the bundle's http or https URL (required).
	URL string
	// Origin names the source in snapshots and status; "" means URL without
	// credentials or query (which may hold a presigned token).
	Origin string
	// Client sends the requests; nil means a client of the Poller's own
	// (a clone of http.DefaultTransport, TLS 1.2 at least, refusing
	// redirects from https to http), whose idle connections Run closes when
	// it returns.
	Client *http.Client
	// Header is added to every request (for example Authorization). It is
	// never logged.
	Header http.Header
	// HeaderFunc, when set, is called before every request for more
	// headers (set over Header's), so that credentials read from files can
	// rotate. Its error fails that poll, like a fetch error; it must not
	// contain the header values. Nothing it returns is logged.
	HeaderFunc func() (http.Header, error)
	// Interval is the time between polls; 0 means 30 s.
	Interval time.Duration
	// Jitter spreads each wait by up to ±Jitter of its length; 0 means 0.1,
	// a negative value disables it. It must be below 1 (not NaN).
	Jitter float64
	// MinBackoff is the wait after the first failure, doubled for every
	// further failure in a row up to MaxBackoff; 0 means 1 s.
	MinBackoff time.Duration
	// MaxBackoff caps the wait after failures; 0 means 5 min.
	MaxBackoff time.Duration
	// Timeout bounds each request, body included; 0 means 30 s.
	Timeout time.Duration
	// MaxBytes refuses a bundle (the response body) larger than this; 0
	// means bundles.DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// Limits bounds every bundle read (fetched or persisted), unpacked;
	// zero fields mean the defaults.
	bundles.Limits
	// PersistDir, when set, is where the last good bundle is kept; Run
	// loads it first, so a restart works while the server is down. Its
	// saved ETag is not sent: the first poll downloads the bundle whole.
	// With MaxAge, the time a poll last confirmed it is kept too (at most
	// MaxAge/4 late), and counts as a successful poll after a restart.
	// The persisted files are read as regular files of at most MaxBytes
	// (a FIFO in their place is refused, never waited on); one refused is
	// logged and polling goes on.
	PersistDir string
	// Verify returns the signature verification in service, asked before
	// every bundle is read, so that a rotated key is used from the next
	// read on; nil means none. With a key, unsigned, tampered and wrongly
	// signed bundles (fetched or persisted) are refused.
	Verify bundles.Verification
	// MaxAge, when positive, makes Ready fail with bundles.ErrStale once the
	// last successful poll is older than MaxAge, for operators who prefer
	// failing closed to serving stale policy: every replica that cannot
	// confirm its bundle for that long (the server down, or serving a
	// bundle that is refused) is not ready. 0 disables the rule.
	MaxAge time.Duration
	// Logger receives poll and error logs; nil discards them.
	Logger *slog.Logger
	// Observer is told about every counted outcome (see bundles.Observer);
	// nil means none.
	Observer bundles.Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After waits between polls; nil means a real timer. Tests inject one
	// to step through polls without sleeping.
	After func(d time.Duration) <-chan time.Time
}

// Poller is a Source that polls a bundle URL. It is safe for concurrent
// use: Status, Ready and Initialized may be called while Run runs. Run
// runs at most once at a time: a second Run while one runs returns
// ErrRunning.
type Poller struct {
	opts      Options
	origin    string
	client    *http.Client
	ownClient bool
	log       *slog.Logger
	now       func() time.Time
	rec       *record.Recorder
	retry     backoff.Exponential // waits after failed polls
	running   atomic.Bool         // Run is running

	// Run's goroutine only: the persistence key and companion of the
	// bundle last persisted.
	saved      string
	savedMeta  meta
	confirmErr string // the last failure to persist a confirmation

	mu       sync.Mutex
	etag     string    // ETag of the bundle the sink holds
	lastPoll time.Time // last successful poll
}

var _ bundles.Source = (*Poller)(nil)

// New validates opts and returns a Poller. It starts nothing and performs
// no I/O.
func New(opts Options) (*Poller, error) {
	if !httpfetch.ValidURL(opts.URL) {
		return nil, fmt.Errorf("%w: URL %q must be an absolute http(s) URL", ErrOptions, httpfetch.Redact(opts.URL))
	}
	if opts.Interval < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.Timeout < 0 ||
		opts.MaxBytes < 0 || opts.MaxFileBytes < 0 || opts.MaxUnpackedBytes < 0 || opts.MaxFiles < 0 ||
		opts.MaxAge < 0 || !(opts.Jitter < 1) { // NaN too: every wait would be the longest there is
		return nil, fmt.Errorf("%w: negative duration or size, or jitter not below 1", ErrOptions)
	}
	verify, err := opts.Verify.Current()
	if err == nil {
		err = verify.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	opts.Interval = cmp.Or(opts.Interval, defaultInterval)
	opts.Jitter = max(cmp.Or(opts.Jitter, defaultJitter), 0) // negative: none
	opts.MinBackoff = cmp.Or(opts.MinBackoff, defaultMinBackoff)
	opts.MaxBackoff = max(cmp.Or(opts.MaxBackoff, defaultMaxBackoff), opts.MinBackoff)
	opts.Timeout = cmp.Or(opts.Timeout, defaultTimeout)
	opts.MaxBytes = cmp.Or(opts.MaxBytes, bundles.DefaultMaxBytes)
	p := &Poller{opts: opts, origin: cmp.Or(opts.Origin, httpfetch.Redact(opts.URL)), client: opts.Client,
		log: cmp.Or(opts.Logger, slog.New(slog.DiscardHandler)), now: opts.Now,
		retry: backoff.Exponential{Min: opts.MinBackoff, Max: opts.MaxBackoff, Jitter: opts.Jitter}}
	if p.client == nil {
		p.client, p.ownClient = httpfetch.NewClient(nil), true
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.rec = record.New(record.Options{Origin: p.origin, Observer: opts.Observer, Logger: p.log, Now: p.now})
	return p, nil
}

// Status returns the source's current status (see bundles.Status for how
// failing polls are counted). LastSuccess is the time of the last
// successful poll (a 200 whose bundle the sink accepted or already held,
// or a 304); after a restart, with MaxAge, the persisted bundle's last
// confirmation counts as one.
func (p *Poller) Status() bundles.Status {
	st := p.rec.Status()
	p.mu.Lock()
	st.LastSuccess = p.lastPoll
	p.mu.Unlock()
	return st
}

// Ready reports whether the Poller's policy is fit to serve: an error
// wrapping bundles.ErrNotLoaded before any snapshot was accepted, or
// bundles.ErrStale when Options.MaxAge is set and exceeded.
func (p *Poller) Ready() error { return p.Status().Check(p.opts.MaxAge, p.now()) }

// Initialized returns a channel closed once Run's first poll has finished
// (after the persisted bundle, if any, was offered), successfully or not.
func (p *Poller) Initialized() <-chan struct{} { return p.rec.Initialized() }

// Run offers the persisted bundle (if any) to sink, polls at once, and then
// keeps polling until ctx is done, delivering every new bundle. Failures are
// reported in Status and the log (once per distinct failure); the previous
// snapshot keeps serving. A server that fails to answer is retried with
// backoff; a bundle refused for its content (it does not parse, verify or
// compile) is polled for again at the interval, as for a success, so that
// the fix of a bad publish is served one poll after it. With MaxAge, the
// policy turning stale, and fresh again, is logged. Run returns nil when
// ctx is done, or ErrRunning at once when the Poller is already running
// (two Runs would share the ETag and the persisted files' bookkeeping).
func (p *Poller) Run(ctx context.Context, sink bundles.Sink) error {
	if !p.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer p.running.Store(false)
	if p.ownClient {
		defer p.client.CloseIdleConnections()
	}
	p.loadPersisted(ctx, sink)
	failures, stale := 0, false
	for {
		fetchFailed := p.poll(ctx, sink)
		p.rec.MarkInitialized()
		if ctx.Err() != nil {
			return nil
		}
		stale = p.logStaleness(stale)
		wait := backoff.Spread(p.opts.Interval, p.opts.Jitter, p.opts.Jitter)
		if fetchFailed {
			failures++
			wait = p.retry.Delay(failures)
		} else {
			failures = 0
		}
		if !backoff.Wait(ctx, wait, p.opts.After, nil) {
			return nil
		}
	}
}

// logStaleness logs the policy turning stale (MaxAge exceeded: not ready)
// or fresh again, given whether it was stale, and returns whether it is.
func (p *Poller) logStaleness(was bool) bool {
	err := p.Ready()
	is := errors.Is(err, bundles.ErrStale)
	switch {
	case is && !was:
		p.log.Error("policy stale", "origin", p.origin, "error", err.Error())
	case !is && was:
		p.log.Info("policy fresh", "origin", p.origin)
	}
	return is
}

// poll fetches the bundle once and delivers it if it changed. It reports
// whether the fetch itself failed (no answer, or not a bundle's): the
// failures backed off.
func (p *Poller) poll(ctx context.Context, sink bundles.Sink) (fetchFailed bool) {
	start := p.now()
	p.mu.Lock()
	etag := p.etag
	p.mu.Unlock()
	res, err := p.fetch(ctx, etag)
	if err != nil {
		if ctx.Err() == nil {
			p.rec.Failed(start, slog.LevelWarn, "policy bundle fetch failed", err)
		}
		return true
	}
	if res.NotModified {
		p.log.Debug("policy bundle not modified", "origin", p.origin)
		if err := p.rec.Unchanged(ctx, sink, start); err != nil {
			return false
		}
		p.markPolled(res.ETag)
		p.persistConfirmed()
		return false
	}
	opts, err := p.tarballOptions()
	var snap *bundles.Snapshot
	if err == nil {
		snap, err = bundles.ReadTarballBytes(res.Body, opts)
	}
	if err != nil {
		p.rec.Failed(start, slog.LevelError, "policy reload failed", err)
		return false
	}
	if err := p.rec.Deliver(ctx, sink, snap, start); err != nil {
		return false
	}
	p.markPolled(res.ETag)
	if err := p.persist(res.Body, res.ETag, snap.Revision); err != nil {
		p.log.Warn("policy bundle not persisted", "origin", p.origin, "error", err)
	}
	p.persistConfirmed()
	return false
}

func (p *Poller) markPolled(etag string) {
	p.mu.Lock()
	p.etag, p.lastPoll = etag, p.now()
	p.mu.Unlock()
}

// tarballOptions are the options of every read, verified as Verify says
// now.
func (p *Poller) tarballOptions() (bundles.TarballOptions, error) {
	return p.opts.Verify.Tarball(bundles.TarballOptions{Origin: p.origin, MaxBytes: p.opts.MaxBytes, Limits: p.opts.Limits, Now: p.now})
}

// fetch performs one conditional GET. A body over MaxBytes is an error
// wrapping bundles.ErrTooLarge as well as ErrFetch.
func (p *Poller) fetch(ctx context.Context, etag string) (httpfetch.Response, error) {
	header := p.opts.Header
	if p.opts.HeaderFunc != nil {
		more, err := p.opts.HeaderFunc()
		if err != nil {
			return httpfetch.Response{}, fmt.Errorf("%w: request headers: %w", ErrFetch, err)
		}
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		for k, vs := range more {
			header[k] = vs
		}
	}
	res, err := httpfetch.Get(ctx, p.client, httpfetch.Request{URL: p.opts.URL, Header: header,
		ETag: etag, MaxBytes: p.opts.MaxBytes, Timeout: p.opts.Timeout})
	switch {
	case errors.Is(err, httpfetch.ErrTooLarge):
		return res, fmt.Errorf("%w: %w: %w", ErrFetch, bundles.ErrTooLarge, err)
	case err != nil:
		return res, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	return res, nil
}
