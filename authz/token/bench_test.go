package token_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	remotejwks "github.com/verdict-pdp/verdict/authz/token/jwks"
)

var benchAlgs = []string{"RS256", "ES256", "EdDSA", "HS256"}

// BenchmarkVerify measures a first-time verification of a valid token.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			iss := authztest.NewIssuer(b, alg)
			tok := iss.Mint(b, map[string]any{"roles": []string{"reader", "writer"}, "azp": "web"})
			v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{iss.Config()}, Leeway: 30 * time.Second})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkJWTv5Parse does the same work with plain golang-jwt v5 (one
// issuer, its key returned by the keyfunc, the same claim validations), as
// the baseline for BenchmarkVerify's overhead.
func BenchmarkJWTv5Parse(b *testing.B) {
	for _, alg := range benchAlgs {
		b.Run(alg, func(b *testing.B) {
			iss := authztest.NewIssuer(b, alg)
			tok := iss.Mint(b, map[string]any{"roles": []string{"reader", "writer"}, "azp": "web"})
			key := iss.PublicKey()
			p := jwt.NewParser(
				jwt.WithValidMethods([]string{alg}),
				jwt.WithJSONNumber(),
				jwt.WithIssuer(iss.Name),
				jwt.WithAudience(iss.Audience),
				jwt.WithExpirationRequired(),
				jwt.WithIssuedAt(),
				jwt.WithLeeway(30*time.Second),
			)
			keyfunc := func(t *jwt.Token) (any, error) {
				if kid, _ := t.Header["kid"].(string); kid != key.ID {
					return nil, jwt.ErrTokenUnverifiable
				}
				return key.Public, nil
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Parse(tok, keyfunc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkKeysFresh measures KeysFresh on its success path, which a cache
// of verified tokens takes on every hit: an issuer with StaticKeys, and one
// with a loaded jwks.Manager. Neither may allocate.
func BenchmarkKeysFresh(b *testing.B) {
	static := authztest.NewIssuer(b, "ES256")
	static.Name = "https://static.test"
	remote := authztest.NewIssuer(b, "ES256")
	remote.Name = "https://remote.test"
	m := runManager(b, remote)
	remoteCfg := remote.Config()
	remoteCfg.Keys = m
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{static.Config(), remoteCfg}})
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, issuer string }{{"static", static.Name}, {"jwks", remote.Name}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := v.KeysFresh(bc.issuer); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// runManager serves iss's public key from a local JWKS endpoint and
// returns a jwks.Manager that has loaded it, running until tb ends.
func runManager(tb testing.TB, iss *authztest.Issuer) *remotejwks.Manager {
	tb.Helper()
	body := authztest.JWKS(tb, iss)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(body) }))
	tb.Cleanup(srv.Close)
	m, err := remotejwks.New(remotejwks.Options{Issuer: iss.Name, URL: srv.URL})
	if err != nil {
		tb.Fatal(err)
	}
	stop := authztest.Start(tb, m.Run)
	tb.Cleanup(func() {
		if err := stop(); err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	<-m.Initialized()
	if err := m.Ready(); err != nil {
		tb.Fatal(err)
	}
	return m
}
