package jwks_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/MicahParks/jwkset"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

// A Manager is an issuer's token.KeySet: build it, run it, and give it to
// the verifier (or authz.Options.Tokens) as the issuer's Keys.
func Example() {
	// A key server; in production, the identity provider.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	jwk, _ := jwkset.NewJWKFromKey(&key.PublicKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "2026-01"}})
	set := jwkset.NewMemoryStorage()
	_ = set.KeyWrite(context.Background(), jwk)
	body, _ := set.JSONPublic(context.Background())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "max-age=900")
		_, _ = w.Write(body)
	}))
	defer srv.Close()

	m, err := jwks.New(jwks.Options{
		Issuer: "https://idp.example.com",
		URL:    srv.URL,
		OnKeysRemoved: func(issuer string, kids []string) {
			// serve: engine.ForgetKeys(issuer, kids)
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	<-m.Initialized()

	_, err = token.NewVerifier(token.Options{Issuers: []token.Issuer{{
		Issuer:     "https://idp.example.com",
		Audiences:  []string{"orders-api"},
		Algorithms: []string{"ES256"},
		Keys:       m,
	}}})
	fmt.Println("verifier:", err)
	fmt.Println("ready:", m.Ready())
	fmt.Println("keys:", m.Status().KeyIDs)

	cancel()
	fmt.Println("run:", <-done)
	// Output:
	// verifier: <nil>
	// ready: <nil>
	// keys: [2026-01]
	// run: <nil>
}
