package authz_test

import (
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// TestCacheStats: Status reports what each cache holds, its bound, and
// how lookups went.
func TestCacheStats(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}, DecisionCacheBytes: 1 << 20},
		authztest.Policy(t, "stats", "package authz\n\nallow if input.action.name == \"read\"\n"))
	tok := token.Raw(is.Mint(t, map[string]any{"sub": "alice"}))
	for range 3 {
		if d, err := e.Decide(t.Context(), authz.Request{Token: tok, Action: authz.Action{Name: "read"}}); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	}
	c := e.Status().Caches
	want := authz.Caches{
		Token:    authz.CacheStats{Entries: 1, MaxBytes: authz.DefaultTokenCacheBytes, Hits: 2, Misses: 1},
		Decision: authz.CacheStats{Entries: 1, MaxBytes: 1 << 20, Hits: 2, Misses: 1},
	}
	if c.Token.Bytes <= 0 || c.Decision.Bytes <= 0 {
		t.Errorf("estimated bytes %d, %d; want more than 0", c.Token.Bytes, c.Decision.Bytes)
	}
	c.Token.Bytes, c.Decision.Bytes = 0, 0
	if c != want {
		t.Errorf("Caches = %+v, want %+v", c, want)
	}
	off := newEngine(t, authz.Options{TokenCacheBytes: -1, DecisionCacheBytes: -1}, authztest.Policy(t, "off", "package authz\n\nallow := true\n"))
	if _, err := off.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}}); err != nil {
		t.Fatal(err)
	}
	if c := off.Status().Caches; c != (authz.Caches{}) {
		t.Errorf("caches off: %+v, want all zero", c)
	}
}
