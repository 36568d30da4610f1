package test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestStaleKeysDenyCachedTokens runs verdict against a remote key set
// (jwks_url) with a short max_stale. A token it verified (and cached) while
// the provider answered is refused once the provider has been down longer
// than max_stale, exactly as a new token is (503 keys_unavailable: an
// outage, not a bad token), and allowed again when the provider is back.
func TestStaleKeysDenyCachedTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	jwks := authztest.JWKS(t, f.Issuer)
	var down atomic.Bool
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "provider down", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "max-age=1")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(idp.Close)

	p := f.start(t, `addr: 127.0.0.1:0
policy:
  dir: policies
decision_log: off
tokens:
  jwks_persist_dir: "off"
  issuers:
    - issuer: `+issuerPEM+`
      audiences: [`+audience+`]
      algorithms: [ES256]
      jwks_url: `+idp.URL+`
      min_refresh: 1s
      max_refresh: 1s
      max_stale: 2s
`, nil)
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	body := mustJSON(t, map[string]any{"token": viewer, "action": "orders:read"})
	decide := func() answer {
		t.Helper()
		return p.decideOK(t, body)
	}
	eventually(t, 10*time.Second, func() string {
		if a := decide(); !a.Allow {
			return "not allowed while the provider is up: " + a.Reasons[0]
		}
		return ""
	})
	for range 3 { // verified once, then answered from the caches
		if a := decide(); !a.Allow {
			t.Fatalf("cached token denied while the provider is up: %v", a.Reasons)
		}
	}

	down.Store(true)
	eventually(t, 15*time.Second, func() string {
		// An outage, not a deny of the token: 503 keys_unavailable.
		r := p.decide(t, body)
		if a := r.JSON(t); r.Status != http.StatusServiceUnavailable || a.Allow || a.Error == nil || a.Error.Code != "keys_unavailable" {
			return fmt.Sprintf("with stale keys a cached token is answered %d %s, want 503 keys_unavailable", r.Status, r.Body)
		}
		return ""
	})
	if r := do(t, p.Client, http.MethodGet, p.Base+"/health/ready", nil, nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/health/ready with stale keys: %d, want 503", r.Status)
	}

	down.Store(false)
	eventually(t, 15*time.Second, func() string {
		if r := p.decide(t, body); r.Status != http.StatusOK || !r.JSON(t).Allow {
			return fmt.Sprintf("not allowed again after the provider came back: %d %s", r.Status, r.Body)
		}
		return ""
	})
}
