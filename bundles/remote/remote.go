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
// it while the bundle server is down.
package remote

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
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
	// (a clone of http.DefaultTransport), whose idle connections Run closes
	// when it returns.
	Client *http.Client
	// Header is added to every request (for example Authorization). It is
	// never logged.
	Header http.Header
	// Interval is the time between polls; 0 means 30 s.
	Interval time.Duration
	// Jitter spreads each wait by up to ±Jitter of its length; 0 means 0.1,
	// a negative value disables it.
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
	// MaxFileBytes refuses any file inside the bundle larger than this,
	// uncompressed; 0 means bundles.DefaultMaxFileBytes (16 MiB).
	MaxFileBytes int64
	// MaxUnpackedBytes refuses a bundle whose files add up to more than
	// this, uncompressed; 0 means bundles.DefaultMaxUnpackedBytes (128 MiB).
	// Decompression stops at the first byte over it, before the signature
	// is checked, so an unsigned archive that expands to gigabytes costs no
	// more memory than this.
	MaxUnpackedBytes int64
	// MaxFiles refuses a bundle of more than this many files; 0 means
	// bundles.DefaultMaxFiles (10,000).
	MaxFiles int
	// PersistDir, when set, is where the last good bundle and its ETag are
	// kept; Run loads it first, so a restart works while the server is down.
	PersistDir string
	// Verify configures signature verification; with a key, unsigned,
	// tampered and wrongly signed bundles (fetched or persisted) are refused.
	Verify bundles.VerifyOptions
	// MaxAge, when positive, makes Ready fail with bundles.ErrStale once the
	// last successful poll is older than MaxAge, for operators who prefer
	// failing closed to serving stale policy. 0 disables the rule.
	MaxAge time.Duration
	// Logger receives poll and error logs; nil discards them.
	Logger *slog.Logger
	// Observer is told about every reload attempt; nil means none.
	Observer bundles.Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// After waits between polls; nil means a real timer. Tests inject one
	// to step through polls without sleeping.
	After func(d time.Duration) <-chan time.Time
}

// Poller is a Source that polls a bundle URL. It is safe for concurrent
// use: Status, Ready and Initialized may be called while Run runs. Run must
// be called at most once at a time.
type Poller struct {
	opts      Options
	origin    string
	client    *http.Client
	ownClient bool
	log       *slog.Logger
	now       func() time.Time
	rec       *bundles.Recorder

	mu       sync.Mutex
	etag     string    // ETag of the bundle the sink holds
	lastPoll time.Time // last successful poll
}

var _ bundles.Source = (*Poller)(nil)

// New validates opts and returns a Poller. It starts nothing and performs
// no I/O.
func New(opts Options) (*Poller, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: URL %q must be an absolute http(s) URL", ErrOptions, opts.URL)
	}
	if opts.Interval < 0 || opts.MinBackoff < 0 || opts.MaxBackoff < 0 || opts.Timeout < 0 ||
		opts.MaxBytes < 0 || opts.MaxFileBytes < 0 || opts.MaxUnpackedBytes < 0 || opts.MaxFiles < 0 ||
		opts.MaxAge < 0 || opts.Jitter >= 1 {
		return nil, fmt.Errorf("%w: negative duration or size, or jitter ≥ 1", ErrOptions)
	}
	if _, err := opts.Verify.Config(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrOptions, err)
	}
	if opts.Interval == 0 {
		opts.Interval = defaultInterval
	}
	switch {
	case opts.Jitter == 0:
		opts.Jitter = defaultJitter
	case opts.Jitter < 0:
		opts.Jitter = 0
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = defaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = defaultMaxBackoff
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Timeout == 0 {
		opts.Timeout = defaultTimeout
	}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = bundles.DefaultMaxBytes
	}
	origin := opts.Origin
	if origin == "" {
		origin = (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
	}
	p := &Poller{opts: opts, origin: origin, client: opts.Client, log: opts.Logger, now: opts.Now}
	if p.client == nil {
		p.client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		p.ownClient = true
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.rec = bundles.NewRecorder(origin, opts.Observer, p.now)
	return p, nil
}

// Status returns the source's current status. LastSuccess is the time of
// the last successful poll (a 200 whose bundle the sink accepted or already
// held, or a 304); loading the persisted bundle does not count.
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
// reported in Status and the log and retried with backoff; the previous
// snapshot keeps serving. Run returns nil when ctx is done.
func (p *Poller) Run(ctx context.Context, sink bundles.Sink) error {
	if p.ownClient {
		defer p.client.CloseIdleConnections()
	}
	p.loadPersisted(ctx, sink)
	failures := 0
	for {
		err := p.poll(ctx, sink)
		p.rec.MarkInitialized()
		if ctx.Err() != nil {
			return nil
		}
		wait := p.opts.Interval
		if err != nil {
			failures++
			wait = p.opts.MinBackoff << min(failures-1, 30)
			if wait <= 0 || wait > p.opts.MaxBackoff {
				wait = p.opts.MaxBackoff
			}
		} else {
			failures = 0
		}
		if !p.sleep(ctx, jitter(wait, p.opts.Jitter)) {
			return nil
		}
	}
}

func jitter(d time.Duration, frac float64) time.Duration {
	if frac <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + frac*(2*rand.Float64()-1)))
}

func (p *Poller) sleep(ctx context.Context, d time.Duration) bool {
	var c <-chan time.Time
	if p.opts.After != nil {
		c = p.opts.After(d)
	} else {
		t := time.NewTimer(d)
		defer t.Stop()
		c = t.C
	}
	select {
	case <-ctx.Done():
		return false
	case <-c:
		return true
	}
}

// poll fetches the bundle once and delivers it if it changed.
func (p *Poller) poll(ctx context.Context, sink bundles.Sink) error {
	start := p.now()
	p.mu.Lock()
	etag := p.etag
	p.mu.Unlock()
	raw, newTag, notModified, err := p.fetch(ctx, etag)
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		p.rec.Failed(err, start)
		p.log.Warn("policy bundle fetch failed", "origin", p.origin, "error", err)
		return err
	}
	if notModified {
		p.rec.Unchanged(start)
		p.markPolled(etag)
		p.log.Debug("policy bundle not modified", "origin", p.origin)
		return nil
	}
	snap, err := bundles.ReadTarballBytes(raw, p.tarballOptions())
	if err != nil {
		p.rec.Forget()
		p.rec.Failed(err, start)
		p.log.Error("policy bundle refused", "origin", p.origin, "error", bundles.FormatError(err))
		return err
	}
	called, err := p.rec.Deliver(ctx, sink, snap, start)
	if err != nil {
		if called && ctx.Err() == nil {
			p.log.Error("policy reload failed", "origin", p.origin, "revision", snap.Revision,
				"error", bundles.FormatError(err))
		}
		return err
	}
	p.markPolled(newTag)
	if called {
		p.log.Info("policy reloaded", "origin", p.origin, "revision", snap.Revision,
			"modules", len(snap.Modules), "took", p.now().Sub(start))
	}
	if called || newTag != etag {
		if err := p.persist(raw, newTag, snap.Revision); err != nil {
			p.log.Warn("policy bundle not persisted", "origin", p.origin, "error", err)
		}
	}
	return nil
}

func (p *Poller) markPolled(etag string) {
	p.mu.Lock()
	p.etag, p.lastPoll = etag, p.now()
	p.mu.Unlock()
}

func (p *Poller) tarballOptions() bundles.TarballOptions {
	return bundles.TarballOptions{Origin: p.origin, Verify: p.opts.Verify,
		MaxBytes: p.opts.MaxBytes, MaxFileBytes: p.opts.MaxFileBytes,
		MaxUnpackedBytes: p.opts.MaxUnpackedBytes, MaxFiles: p.opts.MaxFiles, Now: p.now}
}

// fetch performs one conditional GET.
func (p *Poller) fetch(ctx context.Context, etag string) (raw []byte, newTag string, notModified bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.opts.URL, nil)
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %w", ErrFetch, err)
	}
	for k, v := range p.opts.Header {
		req.Header[k] = append([]string(nil), v...)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: %w", ErrFetch, redact(err))
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && etag != "":
		return nil, etag, true, nil
	case resp.StatusCode != http.StatusOK:
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, "", false, fmt.Errorf("%w: unexpected status %s", ErrFetch, resp.Status)
	case resp.ContentLength > p.opts.MaxBytes:
		return nil, "", false, fmt.Errorf("%w: %w: content length %d over %d bytes",
			ErrFetch, bundles.ErrTooLarge, resp.ContentLength, p.opts.MaxBytes)
	}
	raw, err = io.ReadAll(io.LimitReader(resp.Body, p.opts.MaxBytes+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("%w: reading body: %w", ErrFetch, err)
	}
	if int64(len(raw)) > p.opts.MaxBytes {
		return nil, "", false, fmt.Errorf("%w: %w: body over %d bytes", ErrFetch, bundles.ErrTooLarge, p.opts.MaxBytes)
	}
	return raw, resp.Header.Get("ETag"), false, nil
}

// redact strips the request URL (which may carry a presigned token) from a
// *url.Error, keeping its cause.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// meta is the persisted bundle's companion file.
type meta struct {
	URL      string    `json:"url"`
	ETag     string    `json:"etag,omitempty"`
	Revision string    `json:"revision,omitempty"`
	SavedAt  time.Time `json:"saved_at"`
}

func (p *Poller) persistPaths() (bundlePath, metaPath string) {
	sum := sha256.Sum256([]byte(p.opts.URL))
	name := "bundle-" + hex.EncodeToString(sum[:])[:16]
	return filepath.Join(p.opts.PersistDir, name+".tar.gz"), filepath.Join(p.opts.PersistDir, name+".json")
}

// loadPersisted offers the persisted bundle to sink, verifying it as if it
// had just been fetched. Failures are logged; polling goes on.
func (p *Poller) loadPersisted(ctx context.Context, sink bundles.Sink) {
	if p.opts.PersistDir == "" {
		return
	}
	bp, mp := p.persistPaths()
	raw, err := os.ReadFile(bp)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	start := p.now()
	var m meta
	if err == nil {
		var mb []byte
		if mb, err = os.ReadFile(mp); err == nil {
			err = json.Unmarshal(mb, &m)
		}
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrPersist, err)
		p.rec.Failed(err, start)
		p.log.Warn("persisted policy bundle unreadable", "path", bp, "error", err)
		return
	}
	snap, err := bundles.ReadTarballBytes(raw, p.tarballOptions())
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrPersist, err)
		p.rec.Forget()
		p.rec.Failed(err, start)
		p.log.Error("persisted policy bundle refused", "path", bp, "error", bundles.FormatError(err))
		return
	}
	if _, err := p.rec.Deliver(ctx, sink, snap, start); err != nil {
		if ctx.Err() == nil {
			p.log.Error("persisted policy bundle failed to load", "path", bp, "error", bundles.FormatError(err))
		}
		return
	}
	p.mu.Lock()
	p.etag = m.ETag
	p.mu.Unlock()
	p.log.Info("persisted policy bundle loaded", "origin", p.origin, "revision", snap.Revision, "saved_at", m.SavedAt)
}

// persist atomically replaces the persisted bundle.
func (p *Poller) persist(raw []byte, etag, revision string) error {
	if p.opts.PersistDir == "" {
		return nil
	}
	if err := os.MkdirAll(p.opts.PersistDir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	bp, mp := p.persistPaths()
	mb, err := json.Marshal(meta{URL: p.opts.URL, ETag: etag, Revision: revision, SavedAt: p.now().UTC()})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	// Clear the ETag, replace the bundle, then record its ETag: a crash in
	// between costs one download, never a 304 for the wrong bundle.
	if _, err := os.Stat(mp); err == nil {
		cleared, _ := json.Marshal(meta{URL: p.opts.URL})
		if err := writeAtomic(mp, cleared); err != nil {
			return err
		}
	}
	if err := writeAtomic(bp, raw); err != nil {
		return err
	}
	return writeAtomic(mp, mb)
}

func writeAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: %w", ErrPersist, err)
	}
	return nil
}
