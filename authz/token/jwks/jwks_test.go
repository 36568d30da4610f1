package jwks_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

const idp = "https://idp.test"

const policy = `package authz

default allow := false

allow if input.subject.authenticated
`

// newEngine returns an engine with a loaded policy that allows any
// authenticated subject, trusting iss's name and audience with keys ks.
func newEngine(t *testing.T, iss *authztest.Issuer, ks token.KeySet) *authz.Engine {
	t.Helper()
	e, err := authz.New(authz.Options{Tokens: token.Options{Issuers: []token.Issuer{{
		Issuer: iss.Name, Audiences: []string{iss.Audience}, Algorithms: []string{"ES256"}, Keys: ks,
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context(), authztest.Policy(t, "r1", policy)); err != nil {
		t.Fatal(err)
	}
	return e
}

// decide returns "allow" or the deny reason for a request with tok.
func decide(t *testing.T, e *authz.Engine, tok string) string {
	t.Helper()
	d, _ := e.Decide(t.Context(), authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: "orders:read"}})
	if d.Allow {
		return "allow"
	}
	return strings.Join(d.Reasons, "; ")
}

// removals is an OnKeysRemoved that records its calls and forgets the
// removed keys' verifications in engine, as serve wires it.
type removals struct {
	mu     sync.Mutex
	got    [][]string
	engine *authz.Engine
}

func (r *removals) forget(iss string, kids []string) {
	r.mu.Lock()
	r.got = append(r.got, kids)
	r.mu.Unlock()
	r.engine.ForgetKeys(iss, kids)
}

func (r *removals) calls() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// TestRotation rotates a key in and out through an authz.Engine whose
// verified-token cache is wired to OnKeysRemoved: a new kid is fetched on
// first use; when the old key leaves the set, its tokens are denied at
// once although the engine had cached them.
func TestRotation(t *testing.T) {
	a, b := issuer(t, idp, "a"), issuer(t, idp, "b")
	p := newProvider(t, a)
	clk := newClock()

	var removed removals
	opts := options(p, clk, idp)
	opts.OnKeysRemoved = removed.forget
	m := mustNew(t, opts)
	engine := newEngine(t, a, m)
	removed.engine = engine
	control := newEngine(t, a, m) // same keys, not wired to OnKeysRemoved
	start(t, m)
	clk.idle(t)

	tokA, tokB := a.Mint(t, nil), b.Mint(t, nil)
	for name, e := range map[string]*authz.Engine{"engine": engine, "control": control} {
		if got := decide(t, e, tokA); got != "allow" {
			t.Fatalf("%s: token signed by a = %q, want allow", name, got)
		}
	}

	// Rotation in: b is published; its first use fetches it.
	p.setKeys(a, b)
	hits := p.hits.Load()
	if got := decide(t, engine, tokB); got != "allow" {
		t.Fatalf("token signed by the new key b = %q, want allow", got)
	}
	if got := p.hits.Load() - hits; got != 1 {
		t.Errorf("provider requests for the new kid = %d, want 1", got)
	}
	next := clk.idle(t) // the refresh reset the schedule

	// Rotation out: a leaves the set at the next scheduled refresh.
	p.setKeys(b)
	clk.Advance(next)
	clk.idle(t)
	if diff := cmp.Diff([][]string{{"a"}}, removed.calls()); diff != "" {
		t.Errorf("OnKeysRemoved calls (-want +got):\n%s", diff)
	}
	if got := decide(t, engine, tokA); got != "token: unknown_kid" {
		t.Errorf("cached token signed by the removed key a = %q, want token: unknown_kid", got)
	}
	// The control engine still answers from its cache: ForgetKey is what
	// made the difference above.
	if got := decide(t, control, tokA); got != "allow" {
		t.Errorf("control engine (no ForgetKey) = %q, want allow from its cache", got)
	}
	if got := decide(t, engine, tokB); got != "allow" {
		t.Errorf("token signed by b after rotation = %q, want allow", got)
	}
	st := m.Status()
	if diff := cmp.Diff([]string{"b"}, st.KeyIDs); diff != "" {
		t.Errorf("Status.KeyIDs (-want +got):\n%s", diff)
	}
	if st.Refreshes.UnknownKID < 2 || st.Refreshes.Schedule != 2 || st.KeysRemoved != 1 {
		t.Errorf("Status counts = %+v, refreshes want schedule 2, unknown_kid >= 2, keys removed 1", st)
	}
}

// TestProviderDown: the last good keys keep serving while the provider
// fails, until MaxStale; then lookups fail (deny) until it is back.
func TestProviderDown(t *testing.T) {
	a, p, clk, opts := setup(t)
	opts.MaxRefresh, opts.MaxStale = 10*time.Minute, time.Hour
	m := mustNew(t, opts)
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{{
		Issuer: idp, Audiences: []string{a.Audience}, Algorithms: []string{"ES256"}, Keys: m,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, m)
	next := clk.idle(t)
	tok := a.Mint(t, nil)

	p.setStatus(http.StatusServiceUnavailable)
	clk.Advance(next)
	// 1 s, shortened by up to 10 % so that replicas that failed together
	// come back apart.
	if got := clk.idle(t); got < 900*time.Millisecond || got >= time.Second {
		t.Errorf("retry after a failure in %s, want 1s less up to 10%% jitter", got)
	}
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify with the provider down: %v", err)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready with the provider down: %v", err)
	}
	st := m.Status()
	if !strings.Contains(st.LastError, "503") || st.RefreshErrors.Schedule != 1 {
		t.Errorf("Status = %+v, want the 503 and one schedule refresh error", st)
	}

	// Past MaxStale the keys are no longer trusted.
	clk.Advance(time.Hour)
	clk.idle(t)
	if _, err := m.Lookup(t.Context(), "a"); !errors.Is(err, jwks.ErrStale) {
		t.Errorf("Lookup past max stale: %v, want ErrStale", err)
	}
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, token.ErrKeysUnavailable) {
		t.Errorf("Verify past max stale: %v, want ErrKeysUnavailable", err)
	}
	if err := m.Ready(); !errors.Is(err, jwks.ErrStale) {
		t.Errorf("Ready past max stale: %v, want ErrStale", err)
	}

	// Back up: the next retry restores everything.
	p.setStatus(0)
	clk.Advance(time.Minute)
	clk.idle(t)
	if _, err := v.Verify(t.Context(), tok); err != nil {
		t.Errorf("Verify after recovery: %v", err)
	}
	if st := m.Status(); !st.Ready || st.LastError != "" || st.Age != 0 {
		t.Errorf("Status after recovery = %+v", st)
	}
}

// TestColdStartPersisted: a Manager that starts while the provider is down
// serves the set the previous run persisted, unless it is too old.
func TestColdStartPersisted(t *testing.T) {
	a, p, clk, opts := setup(t)
	opts.PersistDir = filepath.Join(t.TempDir(), "jwks")

	first := mustNew(t, opts)
	stop := start(t, first)
	clk.idle(t)
	stop()
	p.srv.Close() // the provider is gone: connections are refused

	second := mustNew(t, opts)
	start(t, second)
	<-second.Initialized()
	clk.idle(t)
	if err := second.Ready(); err != nil {
		t.Fatalf("Ready on a cold start with a persisted set: %v", err)
	}
	st := second.Status()
	if st.Source != "persisted" || st.LastError == "" || st.RefreshErrors.Schedule != 1 {
		t.Errorf("Status = %+v, want source persisted and the fetch error", st)
	}
	if got := decide(t, newEngine(t, a, second), a.Mint(t, nil)); got != "allow" {
		t.Errorf("decision with the persisted keys = %q, want allow", got)
	}

	// A set saved longer ago than MaxStale is not used.
	clk.Advance(jwks.DefaultMaxStale + time.Minute)
	third := mustNew(t, opts)
	start(t, third)
	<-third.Initialized()
	clk.idle(t)
	if err := third.Ready(); !errors.Is(err, jwks.ErrNotReady) {
		t.Errorf("Ready with a stale persisted set: %v, want ErrNotReady", err)
	}
	if st := third.Status(); st.Source != "" || len(st.KeyIDs) != 0 {
		t.Errorf("Status with a stale persisted set = %+v, want no keys", st)
	}
}

// TestPersistedSetOfAnotherSource: a set persisted for the same issuer
// from another key source (a test configuration's mock provider, a
// jwks_url moved away from) is not read at a cold start, though the two
// share a persist directory: only the configured source is trusted.
func TestPersistedSetOfAnotherSource(t *testing.T) {
	a, mock, clk, opts := setup(t)
	opts.PersistDir = filepath.Join(t.TempDir(), "jwks")
	stop := start(t, mustNew(t, opts))
	clk.idle(t)
	stop()
	if files, _ := filepath.Glob(filepath.Join(opts.PersistDir, "jwks-*.json")); len(files) != 1 {
		t.Fatalf("persisted files = %v, want the mock provider's set", files)
	}

	mock.srv.Close()
	for name, o := range map[string]jwks.Options{
		"another url": {URL: "https://idp.test/keys"},
		"discovery":   {Discovery: true},
	} {
		o.Issuer, o.Now, o.After, o.MissTimeout, o.PersistDir = idp, clk.Now, clk.After, opts.MissTimeout, opts.PersistDir
		o.HTTPClient = &http.Client{Transport: down{}} // every provider is down
		m := mustNew(t, o)
		stop := start(t, m)
		<-m.Initialized()
		clk.idle(t)
		if err := m.Ready(); !errors.Is(err, jwks.ErrNotReady) {
			t.Errorf("%s: Ready = %v, want ErrNotReady (the mock provider's persisted set not read)", name, err)
		}
		if got := decide(t, newEngine(t, a, m), a.Mint(t, nil)); got == "allow" {
			t.Errorf("%s: a token of the mock provider's key was allowed", name)
		}
		stop()
	}
}

// down is a transport to a provider that cannot be reached.
type down struct{}

func (down) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("connection refused")
}

// TestUnknownKIDFlood: concurrent lookups of random kids share one
// refresh; beyond it, refreshes reach the provider at the configured rate
// only, and a kid found missing is answered from the negative cache.
func TestUnknownKIDFlood(t *testing.T) {
	a, p, clk, opts := setup(t)
	opts.UnknownKIDInterval, opts.UnknownKIDBurst = 10*time.Second, 1
	m := mustNew(t, opts)
	start(t, m)
	clk.idle(t)

	flood := func() {
		t.Helper()
		var wg sync.WaitGroup
		for range 200 {
			wg.Go(func() {
				keys, err := m.Lookup(t.Context(), rand.Text())
				if err != nil || len(keys) != 0 {
					t.Errorf("Lookup(random kid) = %v, %v; want no keys, no error", keys, err)
				}
			})
		}
		wg.Wait()
	}
	base := p.hits.Load()
	flood()
	if got := p.hits.Load() - base; got != 1 {
		t.Fatalf("provider requests after the first flood = %d, want 1", got)
	}
	clk.idle(t)
	flood() // no time has passed: the rate limit is spent
	if got := p.hits.Load() - base; got != 1 {
		t.Fatalf("provider requests after the second flood = %d, want still 1", got)
	}
	if got := kids(t, m, "a"); !slices.Equal(got, []string{"a"}) {
		t.Errorf("known kid during the flood = %v", got)
	}

	// A new key published now waits for the limiter, then is found.
	c := issuer(t, idp, "c")
	p.setKeys(a, c)
	if got := kids(t, m, "c"); len(got) != 0 {
		t.Errorf("Lookup(c) while rate-limited = %v, want nothing", got)
	}
	clk.Advance(10 * time.Second)
	if got := kids(t, m, "c"); !slices.Equal(got, []string{"c"}) {
		t.Errorf("Lookup(c) after the interval = %v, want [c]", got)
	}
	clk.idle(t)
	if got := p.hits.Load() - base; got != 2 {
		t.Fatalf("provider requests = %d, want 2", got)
	}

	// A kid a completed refresh did not find is cached negative: asking
	// again costs no refresh and spends no rate.
	clk.Advance(10 * time.Second)
	kids(t, m, "bogus")
	clk.idle(t)
	clk.Advance(10 * time.Second)
	kids(t, m, "bogus")
	if got := p.hits.Load() - base; got != 3 {
		t.Fatalf("provider requests after a negative hit = %d, want 3", got)
	}
	kids(t, m, "other") // the limiter still has the token "bogus" did not spend
	clk.idle(t)
	if got := p.hits.Load() - base; got != 4 {
		t.Fatalf("provider requests = %d, want 4", got)
	}
	st := m.Status()
	if st.Refreshes.UnknownKID != 4 || st.RateLimited == 0 || st.NegativeHits != 1 {
		t.Errorf("Status = %+v, want 4 unknown-kid refreshes, some rate-limited lookups, 1 negative hit", st)
	}
}

// TestSlowProvider: while a refresh hangs on a slow provider, lookups of
// known kids answer at once, and an unknown kid waits MissTimeout at most.
func TestSlowProvider(t *testing.T) {
	a, p, clk, opts := setup(t)
	opts.MissTimeout = 50 * time.Millisecond
	m := mustNew(t, opts)
	engine := newEngine(t, a, m)
	start(t, m)
	next := clk.idle(t)

	release := p.hold()
	clk.Advance(next)
	select {
	case <-p.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduled refresh did not reach the provider")
	}

	tok := a.Mint(t, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			if got := decide(t, engine, tok); got != "allow" {
				t.Errorf("decision for a known kid = %q, want allow", got)
				return
			}
			if got := kids(t, m, "a"); len(got) != 1 {
				t.Errorf("Lookup(a) = %v", got)
				return
			}
			_ = m.Status()
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("known-kid decisions blocked on the slow provider")
	}

	began := time.Now()
	if got := kids(t, m, "unknown"); len(got) != 0 {
		t.Errorf("Lookup(unknown) = %v", got)
	}
	if took := time.Since(began); took < opts.MissTimeout || took > 5*time.Second {
		t.Errorf("unknown kid waited %s, want about MissTimeout (%s)", took, opts.MissTimeout)
	}
	release()
	clk.idle(t)
	if err := m.Ready(); err != nil {
		t.Errorf("Ready after the slow refresh: %v", err)
	}
}

// TestMissWaitBoundedByRefresh: lookups of unknown kids that join a
// refresh hung on the provider wait until MissTimeout after it began, not
// MissTimeout each: forged tokens with made-up kids, sent while the
// provider hangs, are answered at once past that point rather than each
// holding its decision for MissTimeout.
func TestMissWaitBoundedByRefresh(t *testing.T) {
	_, p, clk, opts := setup(t)
	opts.MissTimeout, opts.Timeout = time.Minute, 10*time.Minute
	m := mustNew(t, opts)
	start(t, m)
	clk.idle(t)

	p.hold()
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if got, err := m.Lookup(ctx, "first"); len(got) != 0 || err != nil {
		t.Fatalf("Lookup(first) = %v, %v; want no keys (it gave up with its context)", got, err)
	}
	select {
	case <-p.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the unknown kid's refresh did not reach the provider")
	}
	clk.Advance(opts.MissTimeout) // the refresh still hangs

	began := time.Now()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if got, err := m.Lookup(t.Context(), fmt.Sprint("forged-", i)); len(got) != 0 || err != nil {
				t.Errorf("Lookup(forged-%d) = %v, %v; want no keys", i, got, err)
			}
		})
	}
	wg.Wait()
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("lookups joining a refresh begun MissTimeout ago took %s, want an answer at once", took)
	}
}

// TestDiscovery fetches keys through OpenID Connect discovery and refuses
// a document that names another issuer (or none).
func TestDiscovery(t *testing.T) {
	for _, tc := range []struct {
		name      string
		trailing  bool // configure the issuer with a trailing slash
		doc       func(iss, jwksURI string) map[string]any
		wantErr   error
		wantInErr string
	}{
		{name: "match", doc: func(iss, u string) map[string]any { return map[string]any{"issuer": iss, "jwks_uri": u} }},
		{name: "match with trailing slash", trailing: true, doc: func(iss, u string) map[string]any { return map[string]any{"issuer": iss, "jwks_uri": u} }},
		{name: "other issuer", doc: func(_, u string) map[string]any { return map[string]any{"issuer": "https://evil.test", "jwks_uri": u} },
			wantErr: jwks.ErrIssuerMismatch, wantInErr: `"https://evil.test"`},
		{name: "trailing slash differs", doc: func(iss, u string) map[string]any { return map[string]any{"issuer": iss + "/", "jwks_uri": u} },
			wantErr: jwks.ErrIssuerMismatch},
		{name: "case differs", doc: func(iss, u string) map[string]any {
			return map[string]any{"issuer": strings.ToUpper(iss[:4]) + iss[4:], "jwks_uri": u}
		}, wantErr: jwks.ErrIssuerMismatch},
		{name: "no issuer", doc: func(_, u string) map[string]any { return map[string]any{"jwks_uri": u} },
			wantErr: jwks.ErrIssuerMismatch},
		{name: "no jwks_uri", doc: func(iss, _ string) map[string]any { return map[string]any{"issuer": iss} },
			wantErr: jwks.ErrDiscovery, wantInErr: "jwks_uri"},
		{name: "relative jwks_uri", doc: func(iss, _ string) map[string]any { return map[string]any{"issuer": iss, "jwks_uri": "/jwks"} },
			wantErr: jwks.ErrDiscovery, wantInErr: "jwks_uri"},
		// Member names are exact, as in tokens and keys: "ISSUER" is not
		// issuer (a struct took it, and the last of two spellings won).
		{name: "issuer spelled in capitals", doc: func(iss, u string) map[string]any { return map[string]any{"ISSUER": iss, "jwks_uri": u} },
			wantErr: jwks.ErrIssuerMismatch, wantInErr: "no issuer"},
		{name: "issuer not a string", doc: func(_, u string) map[string]any { return map[string]any{"issuer": 1, "jwks_uri": u} },
			wantErr: jwks.ErrDiscovery, wantInErr: "issuer is not a string"},
		// The document is the provider's, up to MaxBytes: the issuer it
		// names is quoted cut short, not a megabyte in every retry's log
		// line and in Status.
		{name: "long other issuer", doc: func(_, u string) map[string]any {
			return map[string]any{"issuer": "https://evil.test/" + strings.Repeat("\x01", 128<<10), "jwks_uri": u}
		}, wantErr: jwks.ErrIssuerMismatch, wantInErr: `"https://evil.test/`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProvider(t)
			name := p.srv.URL
			if tc.trailing {
				name += "/"
			}
			a := issuer(t, name, "a")
			p.setKeys(a)
			p.discovery = tc.doc(name, p.URL())
			clk := newClock()
			m := mustNew(t, jwks.Options{Issuer: name, Discovery: true, Now: clk.Now, After: clk.After})
			start(t, m)
			clk.idle(t)
			if tc.wantErr == nil {
				if err := m.Ready(); err != nil {
					t.Fatalf("Ready: %v", err)
				}
				if got := kids(t, m, "a"); !slices.Equal(got, []string{"a"}) {
					t.Errorf("Lookup(a) = %v", got)
				}
				if st := m.Status(); st.URL != p.URL() {
					t.Errorf("Status.URL = %q, want %q", st.URL, p.URL())
				}
				return
			}
			if err := m.Ready(); !errors.Is(err, jwks.ErrNotReady) {
				t.Errorf("Ready = %v, want ErrNotReady", err)
			}
			_, err := m.Lookup(t.Context(), "a") // asks for a refresh, which fails the same way
			if !errors.Is(err, jwks.ErrNotReady) || !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantInErr) {
				t.Errorf("Lookup = %v, want ErrNotReady and %v containing %q", err, tc.wantErr, tc.wantInErr)
			}
			if st := m.Status(); len(err.Error()) > 1024 || len(st.LastError) > 1024 || len(st.NotReady) > 1024 {
				t.Errorf("errors of %d, %d and %d bytes (Lookup, Status.LastError, Status.NotReady), want at most 1024",
					len(err.Error()), len(st.LastError), len(st.NotReady))
			}
			clk.idle(t)
			if n := p.hits.Load(); n != 0 {
				t.Errorf("the key set was fetched %d times after a refused discovery document", n)
			}
			if n := p.discHits.Load(); n != 2 {
				t.Errorf("discovery document fetched %d times, want 2", n)
			}
		})
	}
}

// TestKeySetProblems: bad entries are skipped, and a refresh that yields
// no usable key keeps the last good set.
func TestKeySetProblems(t *testing.T) {
	a := issuer(t, idp, "a")
	p := newProvider(t)
	good := `{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw","kid":"hmac"}`
	p.setKeys(a)
	p.mu.Lock()
	p.keys = []byte(strings.Replace(string(p.keys), `"keys":[`, `"keys":[`+good+",", 1))
	p.mu.Unlock()
	clk := newClock()
	opts := options(p, clk, idp)
	opts.MaxBytes = 4096
	m := mustNew(t, opts)
	start(t, m)
	next := clk.idle(t)
	if got := kids(t, m, ""); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("keys = %v, want [a] (the oct key skipped)", got)
	}

	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{name: "not a key set", body: `<html>`, wantErr: "unusable key set"},
		{name: "too large", body: `{"keys":[],"pad":"` + strings.Repeat("x", 5000) + `"}`, wantErr: "over 4096 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.setBody([]byte(tc.body))
			clk.Advance(next)
			next = clk.idle(t)
			if st := m.Status(); !strings.Contains(st.LastError, tc.wantErr) {
				t.Errorf("LastError = %q, want one containing %q", st.LastError, tc.wantErr)
			}
			if got := kids(t, m, "a"); !slices.Equal(got, []string{"a"}) {
				t.Errorf("keys after a bad refresh = %v, want the last good [a]", got)
			}
		})
	}
}

// TestSkippedKeysLogBounded: every bad entry of a key set is skipped, but a
// set of a megabyte holds tens of thousands of them ({"d":""}, eight bytes
// each), and a line each at every refresh made the log ten times the set:
// a few are logged, then how many more there were.
func TestSkippedKeysLogBounded(t *testing.T) {
	a, p, clk, opts := setup(t)
	const bad = 5000
	body := strings.Replace(string(authztest.JWKS(t, a)), `"keys":[`, `"keys":[`+strings.Repeat(`{"d":""},`, bad), 1)
	p.setBody([]byte(body))
	var logs authztest.SyncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := mustNew(t, opts)
	start(t, m)
	clk.idle(t)
	if got := kids(t, m, "a"); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("keys = %v, want [a]", got)
	}
	out := logs.String()
	if n := strings.Count(out, "jwks key skipped"); n > 10 {
		t.Errorf("%d lines for skipped keys, want at most 10", n)
	}
	if want := fmt.Sprintf("more=%d", bad-8); !strings.Contains(out, want) {
		t.Errorf("log does not say how many skipped keys were not logged (%s):\n%.2000s", want, out)
	}
}

// TestLoggedKIDsBounded: every set installed logs its kids, and the keys
// that left it: a set of a megabyte can hold thousands of keys, or kids of
// kilobytes, and a provider changing it at every refresh made each line as
// long. A line lists at most 32 kids, each cut to 128 bytes, and counts the
// rest.
func TestLoggedKIDsBounded(t *testing.T) {
	keys := func(prefix string) []*authztest.Issuer {
		var out []*authztest.Issuer
		for i := range 40 {
			out = append(out, issuer(t, idp, fmt.Sprintf("%s%d-%s", prefix, i, strings.Repeat("k", 4096))))
		}
		return out
	}
	_, p, clk, opts := setup(t)
	p.setKeys(keys("a")...)
	var logs authztest.SyncBuffer
	opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	m := mustNew(t, opts)
	start(t, m)
	next := clk.idle(t)
	p.setKeys(keys("b")...)
	clk.Advance(next)
	clk.idle(t)
	var loaded, removed int
	for line := range strings.Lines(logs.String()) {
		switch {
		case strings.Contains(line, `msg="jwks loaded"`):
			loaded++
		case strings.Contains(line, `msg="jwks keys removed"`):
			removed++
		default:
			continue
		}
		if len(line) > 8<<10 || !strings.Contains(line, "kids_more=8") {
			t.Errorf("a line of %d bytes (%.200s...), want at most 8 KiB, with kids_more=8", len(line), line)
		}
	}
	if loaded != 2 || removed != 1 {
		t.Errorf("%d jwks loaded and %d jwks keys removed lines, want 2 and 1", loaded, removed)
	}
}

// TestUnusableSetRevokes: a key set with no usable key is the provider's
// word that it publishes none (a key revoked in an incident, a set of
// encryption keys only), not an outage: the keys in service are revoked at
// once, cached verifications included, and the persisted set with them, so
// a restart does not bring them back. Keys the provider publishes again
// serve again. (A document that is not a key set keeps the last good keys:
// TestKeySetProblems.)
func TestUnusableSetRevokes(t *testing.T) {
	for _, tc := range []struct {
		name string
		body func(good string) string
	}{
		{"empty set", func(string) string { return `{"keys":[]}` }},
		{"encryption keys only", func(good string) string {
			return strings.Replace(good, `"keys":[{`, `"keys":[{"use":"enc",`, 1)
		}},
		{"a symmetric key only", func(string) string {
			return `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw","kid":"a"}]}`
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, p, clk, opts := setup(t)
			opts.PersistDir = filepath.Join(t.TempDir(), "jwks")
			var removed removals
			opts.OnKeysRemoved = removed.forget
			m := mustNew(t, opts)
			engine := newEngine(t, a, m)
			removed.engine = engine
			stop := start(t, m)
			next := clk.idle(t)
			tok := a.Mint(t, nil)
			if got := decide(t, engine, tok); got != "allow" {
				t.Fatalf("before the revocation: %q, want allow", got)
			}

			p.setBody([]byte(tc.body(string(authztest.JWKS(t, a)))))
			clk.Advance(next)
			clk.idle(t)
			if diff := cmp.Diff([][]string{{"a"}}, removed.calls()); diff != "" {
				t.Errorf("OnKeysRemoved calls (-want +got):\n%s", diff)
			}
			if got := decide(t, engine, tok); got != "token: unknown_kid" {
				t.Errorf("cached token of the revoked key = %q, want token: unknown_kid", got)
			}
			st := m.Status()
			if !strings.Contains(st.LastError, "no usable signing key") || len(st.KeyIDs) != 0 {
				t.Errorf("Status = %+v, want no keys and the error", st)
			}

			// A restart while the provider is down finds no key to serve.
			stop()
			p.setStatus(http.StatusServiceUnavailable)
			restarted := mustNew(t, opts)
			stopRestarted := start(t, restarted)
			<-restarted.Initialized()
			clk.idle(t)
			if _, err := restarted.Lookup(t.Context(), "a"); !errors.Is(err, jwks.ErrNotReady) {
				t.Errorf("Lookup after a restart: %v, want ErrNotReady (the revoked set is not read back)", err)
			}
			stopRestarted()

			// The provider publishes the key again: it serves again.
			p.setStatus(0)
			p.setKeys(a)
			again := mustNew(t, opts)
			start(t, again)
			clk.idle(t)
			if got := decide(t, newEngine(t, a, again), tok); got != "allow" {
				t.Errorf("after the key is published again: %q, want allow", got)
			}
		})
	}
}

// TestUnusableSetAtColdStart: a Manager whose first fetch finds a key set
// with no usable key has nothing to revoke and stays without keys (not
// ready, lookups ErrNotReady), as when the provider is down, until a usable
// set comes.
func TestUnusableSetAtColdStart(t *testing.T) {
	a, p, clk, opts := setup(t)
	p.setBody([]byte(`{"keys":[]}`))
	m := mustNew(t, opts)
	start(t, m)
	<-m.Initialized()
	clk.idle(t)
	if err := m.Ready(); !errors.Is(err, jwks.ErrNotReady) {
		t.Errorf("Ready = %v, want ErrNotReady", err)
	}
	if _, err := m.Lookup(t.Context(), "a"); !errors.Is(err, jwks.ErrNotReady) {
		t.Errorf("Lookup = %v, want ErrNotReady", err)
	}
	next := clk.idle(t) // after the refresh the lookup asked for
	p.setKeys(a)
	clk.Advance(next)
	clk.idle(t)
	if err := m.Ready(); err != nil {
		t.Errorf("Ready once a usable set is published: %v", err)
	}
}

// TestSchedule: the provider's Cache-Control sets the next refresh within
// the bounds, and ETag revalidation confirms the set without a download.
func TestSchedule(t *testing.T) {
	_, p, clk, opts := setup(t)
	p.setHeader("Cache-Control", "public, max-age=600")
	p.setHeader("ETag", `"v1"`)
	opts.MinRefresh, opts.MaxRefresh = time.Minute, 30*time.Minute
	m := mustNew(t, opts)
	start(t, m)
	next := clk.idle(t)
	if next > 10*time.Minute || next < 9*time.Minute {
		t.Errorf("next refresh in %s, want 10m less up to 10%% jitter", next)
	}
	p.setHeader("Cache-Control", "max-age=5")
	clk.Advance(next)
	if next = clk.idle(t); next != time.Minute {
		t.Errorf("next refresh for max-age=5 in %s, want MinRefresh 1m", next)
	}
	if got, _ := p.lastMatch.Load().(string); got != `"v1"` {
		t.Errorf("If-None-Match = %q, want the ETag", got)
	}
	st := m.Status()
	if !st.ConfirmedAt.Equal(clk.Now()) || st.FetchedAt.Equal(st.ConfirmedAt) || st.LastError != "" {
		t.Errorf("Status after a 304 = %+v: want confirmed now, fetched earlier", st)
	}
	p.setHeader("Cache-Control", "max-age=86400")
	clk.Advance(next)
	if next = clk.idle(t); next > 30*time.Minute || next < 27*time.Minute {
		t.Errorf("next refresh for max-age=86400 in %s, want MaxRefresh 30m less jitter", next)
	}
}

// TestRootCAs: the Manager's own client trusts the configured CAs, and
// without them the provider's certificate is refused.
func TestRootCAs(t *testing.T) {
	a := issuer(t, idp, "a")
	p := newProvider(t, a) // for its key set body
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		_, _ = w.Write(p.keys)
	}))
	authztest.StartTLS(t, srv)
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	for _, tc := range []struct {
		name    string
		roots   func() *x509.CertPool
		wantErr string
	}{
		{name: "trusted", roots: func() *x509.CertPool { return pool }},
		{name: "system roots", wantErr: "certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			m := mustNew(t, jwks.Options{Issuer: idp, URL: srv.URL, RootCAs: tc.roots, Now: clk.Now, After: clk.After})
			start(t, m)
			clk.idle(t)
			err := m.Ready()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Ready: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Ready = %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestPlainHTTPWarns: keys fetched over plain http from a host other than
// the loopback can be replaced by anyone on the way; New says so in the
// log (it does not refuse: inside a mesh, plain http is common).
func TestPlainHTTPWarns(t *testing.T) {
	for _, tc := range []struct {
		opts jwks.Options
		warn bool
	}{
		{jwks.Options{Issuer: idp, URL: "http://idp.internal/jwks"}, true},
		{jwks.Options{Issuer: "http://idp.internal", Discovery: true}, true},
		{jwks.Options{Issuer: idp, URL: "http://127.0.0.1:8080/jwks"}, false},
		{jwks.Options{Issuer: idp, URL: "http://localhost/jwks"}, false},
		{jwks.Options{Issuer: idp, URL: "https://idp.test/jwks"}, false},
	} {
		var logs authztest.SyncBuffer
		tc.opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		if _, err := jwks.New(tc.opts); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "plain http"); got != tc.warn {
			t.Errorf("%+v: warned %v, want %v: %s", tc.opts, got, tc.warn, logs.String())
		}
	}
}

func TestNewOptions(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    jwks.Options
		wantErr string
	}{
		{name: "url", opts: jwks.Options{Issuer: idp, URL: "https://idp.test/jwks"}},
		{name: "discovery", opts: jwks.Options{Issuer: idp, Discovery: true}},
		{name: "no issuer", opts: jwks.Options{URL: "https://idp.test/jwks"}, wantErr: "issuer is required"},
		{name: "neither", opts: jwks.Options{Issuer: idp}, wantErr: "one of url and discovery"},
		{name: "both", opts: jwks.Options{Issuer: idp, URL: "https://idp.test/jwks", Discovery: true}, wantErr: "exclusive"},
		{name: "relative url", opts: jwks.Options{Issuer: idp, URL: "/jwks"}, wantErr: "absolute http(s) URL"},
		{name: "discovery without url issuer", opts: jwks.Options{Issuer: "idp", Discovery: true}, wantErr: "discovery needs"},
		{name: "negative", opts: jwks.Options{Issuer: idp, Discovery: true, MissTimeout: -1}, wantErr: "miss timeout"},
		{name: "bounds", opts: jwks.Options{Issuer: idp, Discovery: true, MinRefresh: time.Hour, MaxRefresh: time.Minute}, wantErr: "shorter than min refresh"},
		{name: "stale before refresh", opts: jwks.Options{Issuer: idp, Discovery: true, MaxStale: time.Minute}, wantErr: "healthy keys would go stale"},
		{name: "stale forever", opts: jwks.Options{Issuer: idp, Discovery: true, MaxStale: -1}},
		{name: "roots with client", opts: jwks.Options{Issuer: idp, Discovery: true, RootCAs: x509.NewCertPool, HTTPClient: http.DefaultClient}, wantErr: "own client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := jwks.New(tc.opts)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				if err := m.Ready(); !errors.Is(err, jwks.ErrNotReady) {
					t.Errorf("Ready before Run = %v, want ErrNotReady", err)
				}
				return
			}
			if !errors.Is(err, jwks.ErrOptions) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New = %v, want ErrOptions containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestRunTwice: a second concurrent Run is refused.
func TestRunTwice(t *testing.T) {
	p := newProvider(t, issuer(t, idp, "a"))
	clk := newClock()
	m := mustNew(t, options(p, clk, idp))
	start(t, m)
	clk.idle(t)
	if err := m.Run(t.Context()); !errors.Is(err, jwks.ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
}

// TestPersistedSetNotVouchedFor: a persisted set replaced on disk (another
// key under the provider's kid, the provider's ETag kept) is not confirmed
// by the provider's 304: the first refresh after a start sends no ETag,
// downloads the provider's set and serves it. A set saved in the future
// (which would never go stale) is refused.
func TestPersistedSetNotVouchedFor(t *testing.T) {
	a, p, clk, opts := setup(t)
	p.setHeader("ETag", `"v1"`)
	opts.PersistDir = filepath.Join(t.TempDir(), "jwks")
	first := mustNew(t, opts)
	stop := start(t, first)
	clk.idle(t)
	stop()

	files, _ := filepath.Glob(filepath.Join(opts.PersistDir, "*.json"))
	if len(files) != 1 {
		t.Fatalf("persisted files %v", files)
	}
	edit := func(f func(map[string]any)) {
		t.Helper()
		b, err := os.ReadFile(files[0])
		if err != nil {
			t.Fatal(err)
		}
		var saved map[string]any
		if err := json.Unmarshal(b, &saved); err != nil {
			t.Fatal(err)
		}
		f(saved)
		b, _ = json.Marshal(saved)
		authztest.WriteFile(t, files[0], string(b))
	}
	planted := issuer(t, idp, a.KeyID) // the attacker's key under the provider's kid
	edit(func(saved map[string]any) { saved["jwks"] = json.RawMessage(authztest.JWKS(t, planted)) })

	second := mustNew(t, opts)
	start(t, second)
	<-second.Initialized()
	clk.idle(t)
	if got, _ := p.lastMatch.Load().(string); got != "" {
		t.Errorf("first refresh after a start sent If-None-Match %q, want none", got)
	}
	e := newEngine(t, a, second)
	if got := decide(t, e, planted.Mint(t, nil)); got == "allow" {
		t.Error("a token signed by the key planted in the persisted set is allowed after the first refresh")
	}
	if got := decide(t, e, a.Mint(t, nil)); got != "allow" {
		t.Errorf("a token signed by the provider's key: %q, want allow", got)
	}

	edit(func(saved map[string]any) { saved["saved_at"] = clk.Now().Add(24 * time.Hour).UTC() })
	p.setStatus(http.StatusServiceUnavailable)
	third := mustNew(t, opts)
	start(t, third)
	<-third.Initialized()
	clk.idle(t)
	if st := third.Status(); st.Source != "" || len(st.KeyIDs) != 0 {
		t.Errorf("a set saved in the future: status %+v, want it not loaded", st)
	}
}

// TestRotationBesideKeysWithoutID: a set holding a key without an ID still
// fetches a key the provider has just published under a token's kid (the
// kid-less keys were tried instead, the token denied as bad_signature until
// the next scheduled refresh, up to MaxRefresh later); a kid the set does
// not hold, verified by the key without an ID, asks the provider once, not
// at every new token (the negative cache).
func TestRotationBesideKeysWithoutID(t *testing.T) {
	x, b := issuer(t, idp, "x"), issuer(t, idp, "b")
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(authztest.JWKS(t, x), &set); err != nil {
		t.Fatal(err)
	}
	delete(set.Keys[0], "kid")
	noKID, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t)
	p.setBody(noKID)
	clk := newClock()
	m := mustNew(t, options(p, clk, idp))
	engine := newEngine(t, x, m)
	start(t, m)
	clk.idle(t)

	// Tokens of x carry kid "x", which the set does not hold: the key
	// without an ID verifies them. The first asks the provider once.
	hits := p.hits.Load()
	for i := range 3 {
		if got := decide(t, engine, x.Mint(t, map[string]any{"n": i})); got != "allow" {
			t.Fatalf("token %d of the key without an ID = %q, want allow", i, got)
		}
	}
	if got := p.hits.Load() - hits; got != 1 {
		t.Errorf("provider requests for kid x = %d, want 1 (then the negative cache)", got)
	}

	// b is published under its kid beside x without one: its first token
	// fetches it.
	var published struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(authztest.JWKS(t, b), &published); err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"keys": append(set.Keys, published.Keys...)})
	if err != nil {
		t.Fatal(err)
	}
	p.setBody(body)
	clk.Advance(jwks.DefaultUnknownKIDInterval + time.Second) // the rate limit the first miss spent
	hits = p.hits.Load()
	if got := decide(t, engine, b.Mint(t, nil)); got != "allow" {
		t.Fatalf("token of the newly published key b = %q, want allow", got)
	}
	if got := p.hits.Load() - hits; got != 1 {
		t.Errorf("provider requests for the new kid b = %d, want 1", got)
	}
}
