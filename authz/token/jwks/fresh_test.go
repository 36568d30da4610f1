package jwks_test

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

// TestVerifierKeysFresh follows a Manager through the states a cache of
// verified tokens must see through token.Verifier.KeysFresh: not yet
// loaded, fresh, stale while the provider is down (the injected clock
// moved past MaxStale), and fresh again once it is back. Asking never
// reaches the provider.
func TestVerifierKeysFresh(t *testing.T) {
	a := issuer(t, idp, "a")
	static := issuer(t, "https://static.test", "s")
	p := newProvider(t, a)
	clk := newClock()
	opts := options(p, clk, idp)
	opts.MaxRefresh, opts.MaxStale = 10*time.Minute, time.Hour
	m := mustNew(t, opts)
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{
		{Issuer: idp, Audiences: []string{a.Audience}, Algorithms: []string{"ES256"}, Keys: m},
		static.Config(),
	}})
	if err != nil {
		t.Fatal(err)
	}
	// keysFresh checks KeysFresh(idp): nil, or the keys_unavailable
	// verification error when m.Fresh fails with want.
	keysFresh := func(t *testing.T, want error) {
		t.Helper()
		hits := p.hits.Load()
		got := v.KeysFresh(idp)
		if n := p.hits.Load() - hits; n != 0 {
			t.Errorf("KeysFresh made %d requests to the provider, want 0", n)
		}
		if err := m.Fresh(); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("Manager.Fresh = %v, want %v", err, want)
		}
		if want == nil {
			if got != nil {
				t.Errorf("KeysFresh = %v, want nil", got)
			}
			return
		}
		if !errors.Is(got, token.ErrInvalid) || !errors.Is(got, token.ErrKeysUnavailable) || token.Reason(got) != "keys_unavailable" {
			t.Errorf("KeysFresh = %v, want token.ErrInvalid and token.ErrKeysUnavailable", got)
		}
	}

	t.Run("not yet loaded", func(t *testing.T) { keysFresh(t, jwks.ErrNotReady) })
	if err := v.KeysFresh(static.Name); err != nil {
		t.Errorf("KeysFresh of an issuer with StaticKeys = %v, want nil", err)
	}
	if err := v.KeysFresh("https://nobody.test"); !errors.Is(err, token.ErrBadIssuer) {
		t.Errorf("KeysFresh of an unknown issuer = %v, want bad_issuer", err)
	}

	start(t, m)
	next := clk.idle(t)
	t.Run("fresh", func(t *testing.T) { keysFresh(t, nil) })
	if n := testing.AllocsPerRun(100, func() { _ = v.KeysFresh(idp) }); n != 0 {
		t.Errorf("KeysFresh with fresh keys allocates %v times, want 0", n)
	}

	p.setStatus(http.StatusServiceUnavailable)
	clk.Advance(next)
	clk.idle(t)
	t.Run("provider down within max stale", func(t *testing.T) { keysFresh(t, nil) })

	clk.Advance(time.Hour)
	clk.idle(t)
	t.Run("stale", func(t *testing.T) { keysFresh(t, jwks.ErrStale) })
	if _, err := v.Verify(t.Context(), a.Mint(t, nil)); !errors.Is(err, token.ErrKeysUnavailable) {
		t.Errorf("Verify of a new token while stale = %v, want keys_unavailable as KeysFresh says", err)
	}

	p.setStatus(0)
	clk.Advance(time.Minute)
	clk.idle(t)
	t.Run("back", func(t *testing.T) { keysFresh(t, nil) })
}
