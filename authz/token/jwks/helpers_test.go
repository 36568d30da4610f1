package jwks_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

// clock is a manual clock: Now is set by Advance, and After channels fire
// when Advance passes their deadline. Every After call is announced on
// waits, which tells a test that Run has finished a refresh and is idle.
type clock struct {
	mu     sync.Mutex
	now    time.Time
	timers []fakeTimer
	waits  chan time.Duration
}

type fakeTimer struct {
	at time.Time
	c  chan time.Time
}

func newClock() *clock {
	return &clock{now: time.Now(), waits: make(chan time.Duration, 1024)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	c.mu.Lock()
	if d <= 0 {
		ch <- c.now
	} else {
		c.timers = append(c.timers, fakeTimer{at: c.now.Add(d), c: ch})
	}
	c.mu.Unlock()
	c.waits <- d
	return ch
}

// Advance moves the clock and fires the timers that are due.
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.at.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.c <- c.now
	}
	c.timers = kept
}

// idle waits until Run asks for its next wait and returns it.
func (c *clock) idle(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-c.waits:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not become idle")
		return 0
	}
}

// provider is a local JWKS server (and OIDC discovery endpoint) whose
// answers a test changes as it goes.
type provider struct {
	t   *testing.T
	srv *httptest.Server

	mu        sync.Mutex
	keys      []byte            // the JWKS body served at /jwks
	status    int               // when non-zero, /jwks answers this status
	header    map[string]string // extra response headers
	discovery map[string]any    // the discovery document; nil means 404
	gate      chan struct{}     // when set, /jwks waits for it to close
	entered   chan struct{}     // signalled when a gated request arrives

	hits      atomic.Int64 // requests to /jwks
	discHits  atomic.Int64 // requests to the discovery document
	lastMatch atomic.Value // If-None-Match of the last /jwks request
}

func newProvider(t *testing.T, keys ...*authztest.Issuer) *provider {
	t.Helper()
	p := &provider{t: t, entered: make(chan struct{}, 16)}
	p.setKeys(keys...)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /jwks", p.serveJWKS)
	mux.HandleFunc("GET /.well-known/openid-configuration", p.serveDiscovery)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) URL() string { return p.srv.URL + "/jwks" }

func (p *provider) serveJWKS(w http.ResponseWriter, r *http.Request) {
	p.hits.Add(1)
	p.lastMatch.Store(r.Header.Get("If-None-Match"))
	p.mu.Lock()
	body, status, gate := p.keys, p.status, p.gate
	for k, v := range p.header {
		w.Header().Set(k, v)
	}
	p.mu.Unlock()
	if etag := w.Header().Get("ETag"); etag != "" && r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if gate != nil {
		p.entered <- struct{}{}
		select {
		case <-gate:
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		http.Error(w, "down", status)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(body)
}

func (p *provider) serveDiscovery(w http.ResponseWriter, _ *http.Request) {
	p.discHits.Add(1)
	p.mu.Lock()
	doc := p.discovery
	p.mu.Unlock()
	if doc == nil {
		http.NotFound(w, nil)
		return
	}
	_ = json.NewEncoder(w).Encode(doc)
}

// setKeys serves the public keys of the given issuers (kid KeyID, no alg).
func (p *provider) setKeys(keys ...*authztest.Issuer) {
	p.t.Helper()
	p.setBody(authztest.JWKS(p.t, keys...))
}

func (p *provider) setBody(b []byte) {
	p.mu.Lock()
	p.keys = b
	p.mu.Unlock()
}

func (p *provider) setStatus(code int) {
	p.mu.Lock()
	p.status = code
	p.mu.Unlock()
}

func (p *provider) setHeader(k, v string) {
	p.mu.Lock()
	if p.header == nil {
		p.header = map[string]string{}
	}
	p.header[k] = v
	p.mu.Unlock()
}

// hold makes /jwks requests wait until the returned function is called.
func (p *provider) hold() (release func()) {
	gate := make(chan struct{})
	p.mu.Lock()
	p.gate = gate
	p.mu.Unlock()
	var once sync.Once
	release = func() {
		once.Do(func() {
			p.mu.Lock()
			p.gate = nil
			p.mu.Unlock()
			close(gate)
		})
	}
	p.t.Cleanup(release)
	return release
}

// issuer returns a fresh ES256 test issuer named name with key ID kid.
func issuer(t *testing.T, name, kid string) *authztest.Issuer {
	t.Helper()
	i := authztest.NewIssuer(t, "ES256")
	i.Name, i.KeyID = name, kid
	return i
}

// start runs m until the test ends (or stop is called) and checks that
// Run returns nil once its context is cancelled.
func start(t *testing.T, m *jwks.Manager) (stop func()) {
	t.Helper()
	stopRun := authztest.Start(t, m.Run)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := stopRun(); err != nil {
				t.Errorf("Run returned %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// setup is how most Manager tests begin: issuer a (kid "a") of idp, a
// provider serving its key, a fake clock, and options for a Manager of them.
func setup(t *testing.T) (a *authztest.Issuer, p *provider, clk *clock, opts jwks.Options) {
	t.Helper()
	a = issuer(t, idp, "a")
	p = newProvider(t, a)
	clk = newClock()
	return a, p, clk, options(p, clk, idp)
}

// options returns Options for tests: the provider's URL, the manual clock,
// a short miss timeout, and everything else at its default.
func options(p *provider, clk *clock, iss string) jwks.Options {
	return jwks.Options{
		Issuer:      iss,
		URL:         p.URL(),
		Now:         clk.Now,
		After:       clk.After,
		MissTimeout: 5 * time.Second,
	}
}

func mustNew(t *testing.T, opts jwks.Options) *jwks.Manager {
	t.Helper()
	m, err := jwks.New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func kids(t *testing.T, m *jwks.Manager, kid string) []string {
	t.Helper()
	keys, err := m.Lookup(t.Context(), kid)
	if err != nil {
		t.Fatalf("Lookup(%q): %v", kid, err)
	}
	var out []string
	for _, k := range keys {
		out = append(out, k.ID)
	}
	return out
}
