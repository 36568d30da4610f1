package jwks

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/token"
)

func TestLifetime(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
		wantOK bool
	}{
		{name: "nothing", header: http.Header{}},
		{name: "max-age", header: http.Header{"Cache-Control": {"public, max-age=600"}}, want: 10 * time.Minute, wantOK: true},
		{name: "max-age less age", header: http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, want: 500 * time.Second, wantOK: true},
		{name: "age over max-age", header: http.Header{"Cache-Control": {"max-age=60"}, "Age": {"100"}}, want: 0, wantOK: true},
		{name: "quoted max-age", header: http.Header{"Cache-Control": {`max-age="60"`}}, want: time.Minute, wantOK: true},
		{name: "case and spacing", header: http.Header{"Cache-Control": {"Public ,  MAX-AGE=60"}}, want: time.Minute, wantOK: true},
		{name: "no-cache wins", header: http.Header{"Cache-Control": {"max-age=600", "no-cache"}}, want: 0, wantOK: true},
		{name: "no-store", header: http.Header{"Cache-Control": {"no-store"}}, want: 0, wantOK: true},
		{name: "bad max-age", header: http.Header{"Cache-Control": {"max-age=soon"}}, want: 0, wantOK: true},
		{name: "huge max-age", header: http.Header{"Cache-Control": {"max-age=99999999999999999999"}}, want: 0, wantOK: true},
		{name: "max-age beats expires", header: http.Header{"Cache-Control": {"max-age=60"}, "Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, want: time.Minute, wantOK: true},
		{name: "expires from date", header: http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}, "Date": {now.Add(-time.Hour).Format(http.TimeFormat)}}, want: 2 * time.Hour, wantOK: true},
		{name: "expires from now", header: http.Header{"Expires": {now.Add(time.Hour).Format(http.TimeFormat)}}, want: time.Hour, wantOK: true},
		{name: "expires in the past", header: http.Header{"Expires": {now.Add(-time.Hour).Format(http.TimeFormat)}}, want: 0, wantOK: true},
		{name: "invalid expires", header: http.Header{"Expires": {"0"}}, want: 0, wantOK: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lifetime(tc.header, now)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lifetime = %s, %v; want %s, %v", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestScheduleBounds(t *testing.T) {
	m := &Manager{opts: Options{MinRefresh: time.Minute, MaxRefresh: time.Hour}}
	for _, tc := range []struct {
		lifetime time.Duration
		ok       bool
		want     time.Duration
	}{
		{ok: false, want: time.Hour},
		{lifetime: 0, ok: true, want: time.Minute},
		{lifetime: 5 * time.Second, ok: true, want: time.Minute},
		{lifetime: 10 * time.Minute, ok: true, want: 10 * time.Minute},
		{lifetime: 48 * time.Hour, ok: true, want: time.Hour},
	} {
		if got := m.schedule(tc.lifetime, tc.ok); got != tc.want {
			t.Errorf("schedule(%s, %v) = %s, want %s", tc.lifetime, tc.ok, got, tc.want)
		}
	}
	m.jitter = jitter
	for range 100 {
		if got := m.schedule(10*time.Minute, true); got > 10*time.Minute || got < 9*time.Minute {
			t.Fatalf("jittered schedule = %s, want within [9m, 10m]", got)
		}
		if got := m.schedule(0, true); got != time.Minute {
			t.Fatalf("jittered schedule at the minimum = %s, want 1m", got)
		}
	}
}

// freshManager returns a Manager on a settable clock, holding no key set.
func freshManager(t testing.TB, maxStale time.Duration) (*Manager, *atomic.Int64) {
	t.Helper()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	m, err := New(Options{
		Issuer:   "https://idp.test",
		URL:      "https://idp.test/jwks",
		MaxStale: maxStale,
		Now:      func() time.Time { return time.Unix(0, now.Load()) },
	})
	if err != nil {
		t.Fatal(err)
	}
	return m, &now
}

// TestFresh checks Fresh against the state it reads: no key set, a fresh
// one, a stale one, and MaxStale negative; and that it never asks Run for
// a refresh, nor touches the rate limit, as Lookup would.
func TestFresh(t *testing.T) {
	m, now := freshManager(t, time.Hour)
	tokens := m.limiter.TokensAt(m.now())
	noRefreshAsked := func(t *testing.T) {
		t.Helper()
		m.mu.Lock()
		inflight := m.inflight
		m.mu.Unlock()
		if len(m.kick) != 0 || inflight != nil {
			t.Error("Fresh asked for a refresh")
		}
		if got := m.limiter.TokensAt(m.now()); got != tokens {
			t.Errorf("Fresh spent the unknown-kid rate limit: %v tokens, want %v", got, tokens)
		}
	}

	if err := m.Fresh(); !errors.Is(err, ErrNotReady) {
		t.Errorf("Fresh before any key set = %v, want ErrNotReady", err)
	}
	noRefreshAsked(t)

	m.install(newKeySet([]token.Key{{ID: "a", Public: []byte("0123456789abcdef0123456789abcdef")}}, nil, "", "fetched", m.now()), m.now())
	if err := m.Fresh(); err != nil {
		t.Errorf("Fresh with a new key set = %v, want nil", err)
	}
	now.Add(int64(time.Hour))
	if err := m.Fresh(); err != nil {
		t.Errorf("Fresh at max stale = %v, want nil", err)
	}
	now.Add(int64(time.Second))
	if err := m.Fresh(); !errors.Is(err, ErrStale) {
		t.Errorf("Fresh past max stale = %v, want ErrStale", err)
	}
	if _, err := m.Lookup(t.Context(), "a"); !errors.Is(err, ErrStale) {
		t.Errorf("Lookup past max stale = %v, want ErrStale like Fresh", err)
	}
	noRefreshAsked(t)
	m.confirm(m.now())
	if err := m.Fresh(); err != nil {
		t.Errorf("Fresh after a confirmation = %v, want nil", err)
	}

	forever, now := freshManager(t, -1)
	forever.install(newKeySet([]token.Key{{ID: "a", Public: []byte("0123456789abcdef0123456789abcdef")}}, nil, "", "persisted", forever.now()), forever.now())
	now.Add(int64(1000 * time.Hour))
	if err := forever.Fresh(); err != nil {
		t.Errorf("Fresh with MaxStale < 0 = %v, want nil", err)
	}
}

func TestFreshDoesNotAllocate(t *testing.T) {
	m, _ := freshManager(t, time.Hour)
	m.install(newKeySet([]token.Key{{ID: "a", Public: []byte("0123456789abcdef0123456789abcdef")}}, nil, "", "fetched", m.now()), m.now())
	if n := testing.AllocsPerRun(100, func() {
		if err := m.Fresh(); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Fresh allocates %v times, want 0", n)
	}
}

// BenchmarkFresh measures Fresh on a fresh key set, the path a cache of
// verified tokens takes on every hit.
func BenchmarkFresh(b *testing.B) {
	m, _ := freshManager(b, time.Hour)
	m.install(newKeySet([]token.Key{{ID: "a", Public: []byte("0123456789abcdef0123456789abcdef")}}, nil, "", "fetched", m.now()), m.now())
	b.ReportAllocs()
	for b.Loop() {
		if err := m.Fresh(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestSchemes: an issuer is https, and a discovered jwks_uri must then be
// https too, whatever case its scheme is written in (Go fetches HTTPS://
// as https); plain http is warned about except to the loopback.
func TestSchemes(t *testing.T) {
	for _, tc := range []struct {
		url          string
		https, plain bool
	}{
		{url: "https://idp.example", https: true},
		{url: "HTTPS://idp.example", https: true},
		{url: "HtTpS://idp.example", https: true},
		{url: "http://idp.example", plain: true},
		{url: "HTTP://idp.example", plain: true},
		{url: "http://127.0.0.1:8080"},
		{url: "http://localhost"},
		{url: "ftp://idp.example"},
	} {
		if got := httpsURL(tc.url); got != tc.https {
			t.Errorf("httpsURL(%q) = %v, want %v", tc.url, got, tc.https)
		}
		if got := plainHTTP(tc.url); got != tc.plain {
			t.Errorf("plainHTTP(%q) = %v, want %v", tc.url, got, tc.plain)
		}
	}
}
