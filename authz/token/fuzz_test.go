package token_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// FuzzVerify feeds arbitrary strings to Verify and VerifyCaller. They must
// never panic, every error must carry ErrInvalid and exactly one cause, and
// a success is only allowed for a token whose signed part (header.payload)
// was minted in this process with a configured key (the keys are generated
// per process, so a token minted elsewhere, such as a corpus entry, can
// never verify), and its Content must be that part's SHA-256. The
// comparison is on the signed part rather than the whole string because
// ECDSA signatures are malleable: (r, n-s) verifies as well as (r, s).
func FuzzVerify(f *testing.F) {
	const callerAud = "callers"
	var cfgs []token.Issuer
	minted := map[string]string{}    // signed part -> issuer
	valid := map[string]bool{}       // Verify accepts these
	validCaller := map[string]bool{} // VerifyCaller accepts these
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
		validCaller[iss.Mint(f, map[string]any{"sub": "fuzz", "aud": callerAud})] = true
	}

	// strict has the stricter profile and two keys, so kid is required.
	strict := authztest.NewIssuer(f, "ES256")
	strict.Name = "https://strict.test"
	second := authztest.NewIssuer(f, "ES256")
	second.Name, second.KeyID = strict.Name, "second"
	cfg := strict.Config()
	cfg.Keys = token.StaticKeys{strict.PublicKey(), second.PublicKey()}
	cfg.MaxLifetime = 2 * time.Hour
	cfg.RequiredType = "at+jwt"
	cfgs = append(cfgs, cfg)
	at := map[string]any{"typ": "at+jwt"}
	for _, tok := range []string{
		strict.Mint(f, nil), // typ JWT
		strict.MintWithHeader(f, map[string]any{"typ": "application/AT+JWT", "kid": nil}, nil),
		second.MintWithHeader(f, map[string]any{"typ": 1}, nil),
		strict.MintWithHeader(f, at, map[string]any{"exp": time.Now().Add(3 * time.Hour).Unix()}),
		strict.MintWithHeader(f, at, map[string]any{"iat": nil}),
	} {
		f.Add(tok)
		minted[tok[:strings.LastIndexByte(tok, '.')]] = strict.Name
	}
	valid[strict.MintWithHeader(f, at, map[string]any{"sub": "fuzz"})] = true
	validCaller[second.MintWithHeader(f, at, map[string]any{"sub": "fuzz", "aud": callerAud})] = true

	for _, m := range []map[string]bool{valid, validCaller} {
		for tok := range m {
			f.Add(tok)
			minted[tok[:strings.LastIndexByte(tok, '.')]] = ""
		}
	}
	for _, s := range []string{"", ".", "..", "...", "a.b.c", "e30.e30.", "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("a", token.DefaultMaxBytes+1)} {
		f.Add(s)
	}
	v, err := token.NewVerifier(token.Options{Issuers: cfgs, Leeway: time.Minute, CallerAudiences: []string{callerAud}})
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, s string) {
		got, err := v.Verify(t.Context(), s)
		checkFuzzed(t, "Verify", s, got, err, valid, minted)
		got, err = v.VerifyCaller(t.Context(), s)
		checkFuzzed(t, "VerifyCaller", s, got, err, validCaller, minted)
	})
}

// checkFuzzed checks what the method name returned for s: valid lists the
// tokens it must accept, minted the signed parts it may accept.
func checkFuzzed(t *testing.T, name, s string, got *token.Verified, err error, valid map[string]bool, minted map[string]string) {
	t.Helper()
	if err != nil {
		if got != nil {
			t.Fatalf("%s returned a Verified with error %v", name, err)
		}
		if !errors.Is(err, token.ErrInvalid) {
			t.Fatalf("%s: error %q does not wrap ErrInvalid", name, err)
		}
		n := 0
		for _, c := range allCauses {
			if errors.Is(err, c) {
				n++
			}
		}
		if n != 1 || token.Reason(err) == "invalid" {
			t.Fatalf("%s: error %q wraps %d causes, reason %q", name, err, n, token.Reason(err))
		}
		if valid[s] {
			t.Fatalf("%s refused a valid minted token: %v", name, err)
		}
		return
	}
	if got == nil {
		t.Fatalf("%s returned nil, nil", name)
	}
	i := strings.LastIndexByte(s, '.')
	if i < 0 {
		t.Fatalf("%s accepted a token without dots: %q", name, s)
	}
	iss, ok := minted[s[:i]]
	if !ok {
		t.Fatalf("%s accepted a token that was never minted: %q", name, s)
	}
	if iss != "" && got.Issuer != iss {
		t.Fatalf("%s accepted a token of %q as %q", name, iss, got.Issuer)
	}
	if got.Content != sha256.Sum256([]byte(s[:i])) {
		t.Fatalf("%s: Content is not the SHA-256 of the signed part", name)
	}
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
				Algorithms: []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
				Keys:       token.StaticKeys{k},
			}}})
			if err != nil {
				t.Fatalf("NewVerifier refuses a key ParseJWKS returned: %v", err)
			}
		}
	})
}
