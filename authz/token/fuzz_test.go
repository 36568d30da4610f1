package token_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// FuzzVerify feeds arbitrary strings to Verify. It must never panic, every
// error must carry ErrInvalid and exactly one cause, and a success is only
// allowed for a token whose signed part (header.payload) was minted in this
// process with a configured key (the keys are generated per process, so a
// token minted elsewhere, such as a corpus entry, can never verify). The
// comparison is on the signed part rather than the whole string because
// ECDSA signatures are malleable: (r, n-s) verifies as well as (r, s).
func FuzzVerify(f *testing.F) {
	var cfgs []token.Issuer
	minted := map[string]string{} // signed part -> issuer
	valid := map[string]bool{}
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"} {
		iss := authztest.NewIssuer(f, alg)
		iss.Name = "https://" + strings.ToLower(alg) + ".test"
		cfg := iss.Config()
		cfg.Audiences = append(cfg.Audiences, "other")
		cfgs = append(cfgs, cfg)
		for _, tok := range []string{
			iss.Mint(f, nil),
			iss.Mint(f, map[string]any{"aud": []string{"x", "other"}, "nbf": time.Now().Unix(), "roles": []string{"a"}}),
			iss.MintWithHeader(f, map[string]any{"kid": nil, "jku": "https://evil.test/"}, nil),
			iss.Mint(f, map[string]any{"exp": nil}),                               // missing exp
			iss.Mint(f, map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}), // expired
			iss.Mint(f, map[string]any{"aud": "nobody"}),
			iss.MintWithHeader(f, map[string]any{"alg": "none"}, nil),
			iss.MintWithHeader(f, map[string]any{"kid": "unknown"}, nil),
		} {
			f.Add(tok)
			minted[tok[:strings.LastIndexByte(tok, '.')]] = iss.Name
		}
		valid[iss.Mint(f, map[string]any{"sub": "fuzz"})] = true
	}
	for tok := range valid {
		f.Add(tok)
		minted[tok[:strings.LastIndexByte(tok, '.')]] = ""
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("a", token.DefaultMaxBytes+1)} {
		f.Add(s)
	}
	v, err := token.NewVerifier(token.Options{Issuers: cfgs, Leeway: time.Minute})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, s string) {
		got, err := v.Verify(t.Context(), s)
		if err != nil {
			if got != nil {
				t.Fatalf("Verified returned with error %v", err)
			}
			if !errors.Is(err, token.ErrInvalid) {
				t.Fatalf("error %q does not wrap ErrInvalid", err)
			}
			n := 0
			for _, c := range allCauses {
				if errors.Is(err, c) {
					n++
				}
			}
			if n != 1 || token.Reason(err) == "invalid" {
				t.Fatalf("error %q wraps %d causes, reason %q", err, n, token.Reason(err))
			}
			if valid[s] {
				t.Fatalf("a valid minted token was refused: %v", err)
			}
			return
		}
		if got == nil {
			t.Fatal("Verify returned nil, nil")
		}
		i := strings.LastIndexByte(s, '.')
		if i < 0 {
			t.Fatalf("accepted a token without dots: %q", s)
		}
		iss, ok := minted[s[:i]]
		if !ok {
			t.Fatalf("accepted a token that was never minted: %q", s)
		}
		if iss != "" && got.Issuer != iss {
			t.Fatalf("accepted a token of %q as %q", iss, got.Issuer)
		}
	})
}

// FuzzParseJWKS feeds arbitrary bytes to ParseJWKS. It must never panic,
// and every key it returns must be a public key that NewVerifier accepts.
func FuzzParseJWKS(f *testing.F) {
	rs := authztest.NewIssuer(f, "RS256")
	es := authztest.NewIssuer(f, "ES256")
	ed := authztest.NewIssuer(f, "EdDSA")
	rsJWK := jwk(f, rs.PublicKey().Public, "r", jwkset.AlgRS256, false)
	esJWK := jwk(f, es.PublicKey().Public, "e", "", false)
	edJWK := jwk(f, ed.PublicKey().Public, "d", jwkset.AlgEdDSA, false)
	for _, b := range [][]byte{
		jwks(f, rsJWK, esJWK, edJWK),
		jwks(f, edit(rsJWK, "use", "enc")),
		jwks(f, edit(esJWK, "alg", "ES384")),
		jwks(f, edit(edJWK, "d", "AAAA")),
		jwks(f, map[string]any{"kty": "oct", "k": "AAAA"}),
		jwks(f, edit(esJWK, "key_ops", []string{"verify"})),
		[]byte(`{"keys":[]}`),
		[]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`),
		[]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`),
		[]byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":""}]}`),
		[]byte(`{}`),
		[]byte(`null`),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		lenient, skipped, lerr := token.ParseJWKSLenient(data)
		keys, err := token.ParseJWKS(data)
		switch {
		case lerr != nil && (err == nil || lenient != nil || skipped != nil):
			t.Fatalf("ParseJWKSLenient failed (%v) where ParseJWKS did not, or returned keys", lerr)
		case lerr == nil && (err != nil) != (len(skipped) > 0):
			t.Fatalf("ParseJWKS err %v with %d keys skipped by ParseJWKSLenient", err, len(skipped))
		case err == nil && len(keys) != len(lenient):
			t.Fatalf("ParseJWKS returned %d keys, ParseJWKSLenient %d", len(keys), len(lenient))
		}
		if err != nil {
			if keys != nil {
				t.Fatalf("keys returned with error %v", err)
			}
			return
		}
		for _, k := range keys {
			switch k.Public.(type) {
			case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
			default:
				t.Fatalf("ParseJWKS returned a %T", k.Public)
			}
			_, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{{
				Issuer:     "i",
				Audiences:  []string{"a"},
				Algorithms: []string{"RS256"},
				Keys:       token.StaticKeys{k},
			}}})
			if err != nil {
				t.Fatalf("NewVerifier refuses a key ParseJWKS returned: %v", err)
			}
		}
	})
}
