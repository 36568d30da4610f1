package token_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
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
