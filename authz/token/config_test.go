package token_test

import (
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// weakRSA is a 1024-bit key, generated once: it must be refused.
var weakRSA = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	return k
})

func TestNewVerifierConfig(t *testing.T) {
	es := authztest.NewIssuer(t, "ES256")
	rs := authztest.NewIssuer(t, "RS256")
	p224 := ecKey(t, elliptic.P224())
	_, edPriv := edKey(t)
	rsKey := rs.PublicKey().Public
	esKey := es.PublicKey().Public

	// with returns es's config changed by f.
	with := func(f func(*token.Issuer)) []token.Issuer {
		c := es.Config()
		f(&c)
		return []token.Issuer{c}
	}
	keys := func(ks ...token.Key) []token.Issuer {
		return with(func(c *token.Issuer) {
			c.Algorithms = []string{"ES256", "RS256", "HS256", "EdDSA"}
			c.Keys = token.StaticKeys(ks)
		})
	}

	for _, tc := range []struct {
		name string
		opts token.Options
		// want lists substrings the error must contain; nil means success.
		want []string
	}{
		{name: "valid", opts: token.Options{Issuers: with(func(*token.Issuer) {})}},
		{name: "valid all algorithms", opts: token.Options{Issuers: with(func(c *token.Issuer) {
			c.Algorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"}
		})}},
		{name: "valid leeway and size", opts: token.Options{Issuers: with(func(*token.Issuer) {}), Leeway: time.Minute, MaxBytes: 100}},
		{name: "no issuers", opts: token.Options{}, want: []string{"at least one issuer"}},
		{name: "empty issuer", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Issuer = "" })}, want: []string{"issuer is empty"}},
		{name: "duplicate issuer", opts: token.Options{Issuers: append(with(func(*token.Issuer) {}), es.Config())}, want: []string{`issuer 1 ("https://issuer.test"): issuer is configured twice`}},
		{name: "no audiences", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Audiences = nil })}, want: []string{"audiences: at least one"}},
		{name: "empty audience", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Audiences = []string{"a", ""} })}, want: []string{"audiences[1] is empty"}},
		{name: "no algorithms", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = nil })}, want: []string{"algorithms: at least one"}},
		{name: "alg none", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"ES256", "none"} })}, want: []string{`algorithms[1]: "none" is never allowed`}},
		{name: "alg NONE", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"NONE"} })}, want: []string{`"NONE" is never allowed`}},
		{name: "alg nOnE", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"nOnE"} })}, want: []string{`"nOnE" is never allowed`}},
		{name: "alg lowercase", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"es256"} })}, want: []string{`"es256" is not a supported algorithm`}},
		{name: "alg unknown", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"ES256K"} })}, want: []string{`"ES256K" is not a supported`}},
		{name: "nil keys", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Keys = nil })}, want: []string{"keys are required"}},
		{name: "empty static keys", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Keys = token.StaticKeys{} })}, want: []string{"keys: no keys"}},
		// Every token would be disallowed_alg: an EC key under RS256.
		{name: "no key fits the algorithms", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.Algorithms = []string{"RS256", "PS256"} })},
			want: []string{"no key can verify any of algorithms [RS256 PS256]"}},
		{name: "a key pinned to another algorithm", opts: token.Options{Issuers: with(func(c *token.Issuer) {
			c.Algorithms, c.Keys = []string{"RS256"}, token.StaticKeys{{ID: "r", Algorithm: "RS384", Public: rsKey}}
		})}, want: []string{"no key can verify any of algorithms [RS256]"}},
		{name: "one key of two fits", opts: token.Options{Issuers: with(func(c *token.Issuer) {
			c.Algorithms, c.Keys = []string{"RS256"}, token.StaticKeys{{ID: "e", Public: esKey}, {ID: "r", Public: rsKey}}
		})}},
		{name: "negative leeway", opts: token.Options{Issuers: with(func(*token.Issuer) {}), Leeway: -time.Second}, want: []string{"leeway -1s is not between 0 and 5m0s"}},
		{name: "leeway over MaxLeeway", opts: token.Options{Issuers: with(func(*token.Issuer) {}), Leeway: token.MaxLeeway + time.Second},
			want: []string{"leeway 5m1s is not between 0 and 5m0s"}},
		{name: "negative max bytes", opts: token.Options{Issuers: with(func(*token.Issuer) {}), MaxBytes: -1}, want: []string{"max bytes -1 is negative"}},
		{name: "rsa 1024", opts: token.Options{Issuers: keys(token.Key{ID: "weak", Public: &weakRSA().PublicKey})}, want: []string{`keys[0] (kid "weak"): rsa key has 1024 bits, want 2048 to 8192`}},
		{name: "rsa 2048", opts: token.Options{Issuers: keys(token.Key{Public: rsKey})}},
		{name: "hmac 31 bytes", opts: token.Options{Issuers: keys(token.HMACKey(make([]byte, 31)))}, want: []string{"hmac secret has 31 bytes, want at least 32"}},
		{name: "hmac 32 bytes", opts: token.Options{Issuers: keys(token.HMACKey(make([]byte, 32)))}},
		{name: "p-224 key", opts: token.Options{Issuers: keys(token.Key{Public: &p224.PublicKey})}, want: []string{"ecdsa curve P-224 is not supported"}},
		{name: "private rsa key", opts: token.Options{Issuers: keys(token.Key{Public: weakRSA()})}, want: []string{"*rsa.PrivateKey is a private key"}},
		{name: "private ed25519 key", opts: token.Options{Issuers: keys(token.Key{Public: edPriv})}, want: []string{"ed25519.PrivateKey is a private key"}},
		{name: "string key", opts: token.Options{Issuers: keys(token.Key{Public: "secret"})}, want: []string{"unsupported key type string"}},
		{name: "short ed25519", opts: token.Options{Issuers: keys(token.Key{Public: ed25519.PublicKey(make([]byte, 31))})}, want: []string{"ed25519 key has 31 bytes"}},
		{name: "rsa key pinned to HS256", opts: token.Options{Issuers: keys(token.Key{Algorithm: "HS256", Public: rsKey})}, want: []string{"algorithm HS256 does not fit the rsa key"}},
		{name: "p-256 key pinned to ES384", opts: token.Options{Issuers: keys(token.Key{Algorithm: "ES384", Public: esKey})}, want: []string{"algorithm ES384 does not fit the ecdsa P-256 key"}},
		{name: "key pinned to none", opts: token.Options{Issuers: keys(token.Key{Algorithm: "none", Public: esKey})}, want: []string{`unsupported algorithm "none"`}},
		{name: "key pinned to its alg", opts: token.Options{Issuers: keys(token.Key{Algorithm: "ES256", Public: esKey})}},
		{name: "max lifetime", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.MaxLifetime = time.Hour })}},
		{name: "negative max lifetime", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.MaxLifetime = -time.Second })}, want: []string{"max lifetime -1s is negative"}},
		{name: "max lifetime with exp optional", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.MaxLifetime, c.ExpOptional = time.Hour, true })},
			want: []string{`issuer 0 ("https://issuer.test"): max lifetime needs exp: it cannot be combined with exp optional`}},
		{name: "exp optional alone", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.ExpOptional = true })}},
		{name: "required type", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "at+jwt" })}},
		{name: "required type with prefix", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "application/at+jwt" })}},
		{name: "required type with space", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "at+jwt " })}, want: []string{`required type "at+jwt ": has spaces, control characters or non-ASCII characters`}},
		{name: "required type non-ascii", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "\u212a+jwt" })}, want: []string{"non-ASCII characters"}},
		{name: "required type empty subtype", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "application/" })}, want: []string{`required type "application/": is not a media type`}},
		{name: "required type empty type", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "/at+jwt" })}, want: []string{"is not a media type"}},
		{name: "required type two slashes", opts: token.Options{Issuers: with(func(c *token.Issuer) { c.RequiredType = "application/at/jwt" })}, want: []string{"is not a media type"}},
		{name: "caller audiences", opts: token.Options{Issuers: with(func(*token.Issuer) {}), CallerAudiences: []string{"callers"}}},
		{name: "empty caller audience", opts: token.Options{Issuers: with(func(*token.Issuer) {}), CallerAudiences: []string{"callers", ""}}, want: []string{"token: caller audiences[1] is empty"}},
		{name: "every problem reported", opts: token.Options{
			Issuers: []token.Issuer{{Issuer: ""}, {Issuer: "x", Audiences: []string{"a"}, Algorithms: []string{"none"}}},
			Leeway:  -1,
		}, want: []string{"leeway", "issuer 0", "issuer is empty", "issuer 1", `"none" is never allowed`, "keys are required"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := token.NewVerifier(tc.opts)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("NewVerifier: %v", err)
				}
				if v == nil {
					t.Fatal("NewVerifier returned nil, nil")
				}
				return
			}
			if err == nil {
				t.Fatalf("NewVerifier succeeded, want error containing %q", tc.want)
			}
			if v != nil {
				t.Error("NewVerifier returned a Verifier with an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
