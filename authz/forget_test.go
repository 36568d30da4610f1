package authz_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// rotatingKeys serves key "old" until removed is set, as a key manager
// whose new set no longer holds it.
type rotatingKeys struct {
	removed atomic.Bool
	key     token.Key
}

func (r *rotatingKeys) Lookup(_ context.Context, _ string) ([]token.Key, error) {
	if r.removed.Load() {
		return nil, nil
	}
	return []token.Key{r.key}, nil
}

// TestForgetKeyDuringVerifications: a key removed while tokens it signed are
// being verified takes every one of them with it. Verifications race the
// removal from many goroutines; afterwards no token signed by the removed
// key may be allowed (from the cache or otherwise).
func TestForgetKeyDuringVerifications(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	const rounds, n = 12, 2000
	for round := range rounds {
		ks := &rotatingKeys{key: token.Key{ID: "old", Public: secret}}
		e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{{
			Issuer: "https://idp.test", Audiences: []string{"api"}, Algorithms: []string{"HS256"}, Keys: ks}}}},
			authztest.Policy(t, "p", "package authz\n\nallow if input.subject.authenticated\n"))
		toks := make([]token.Raw, n)
		for i := range toks {
			tk := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": "https://idp.test", "aud": "api",
				"sub": fmt.Sprint(i), "exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix()})
			tk.Header["kid"] = "old"
			s, err := tk.SignedString(secret)
			if err != nil {
				t.Fatal(err)
			}
			toks[i] = token.Raw(s)
		}
		var wg sync.WaitGroup
		var next atomic.Int64
		for range 8 {
			wg.Go(func() {
				for i := next.Add(1) - 1; i < n; i = next.Add(1) - 1 {
					_, _ = e.Decide(t.Context(), authz.Request{Token: toks[i], Action: authz.Action{Name: "x"}})
				}
			})
		}
		for next.Load() < n/2 {
			time.Sleep(10 * time.Microsecond)
		}
		// A key manager's order: install the new set, then report the removal.
		ks.removed.Store(true)
		e.ForgetKey("https://idp.test", "old")
		wg.Wait()
		for i, tok := range toks {
			if d, err := e.Decide(t.Context(), authz.Request{Token: tok, Action: authz.Action{Name: "x"}}); err == nil || d.Allow {
				t.Fatalf("round %d: token %d, signed by the removed key, still allowed after ForgetKey", round, i)
			}
		}
	}
}
