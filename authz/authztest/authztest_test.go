package authztest_test

import (
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// decode returns a segment of a compact JWT as a map.
func decode(t *testing.T, tok string, i int) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestIssuer(t *testing.T) {
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			iss := authztest.NewIssuer(t, alg)
			if iss.Name != "https://issuer.test" || iss.Audience != "verdict-test" || iss.Alg != alg || iss.KeyID != "test-"+strings.ToLower(alg) {
				t.Errorf("issuer fields = %q %q %q %q", iss.Name, iss.Audience, iss.Alg, iss.KeyID)
			}
			v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{iss.Config()}})
			if err != nil {
				t.Fatalf("Config is refused: %v", err)
			}
			tok := iss.Mint(t, map[string]any{"role": "admin"})
			got, err := v.Verify(t.Context(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Subject != "alice" || got.Issuer != iss.Name || got.KeyID != iss.KeyID || got.Claims["role"] != "admin" {
				t.Errorf("Verified = %+v", got)
			}
			if diff := cmp.Diff(map[string]any{"alg": alg, "kid": iss.KeyID, "typ": "JWT"}, decode(t, tok, 0)); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if k := iss.PublicKey(); k.ID != iss.KeyID || k.Algorithm != "" {
				t.Errorf("PublicKey = %+v", k)
			}
		})
	}
}

func TestIssuerKeysAreFresh(t *testing.T) {
	a, b := authztest.NewIssuer(t, "ES256"), authztest.NewIssuer(t, "ES256")
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{a.Config()}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), b.Mint(t, nil)); err == nil {
		t.Error("a token of another ES256 Issuer verified")
	}
}

func TestJWKS(t *testing.T) {
	es, ed := authztest.NewIssuer(t, "ES256"), authztest.NewIssuer(t, "EdDSA")
	keys, err := token.ParseJWKS(authztest.JWKS(t, es, ed))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || keys[0].ID != es.KeyID || keys[1].ID != ed.KeyID {
		t.Fatalf("keys = %+v", keys)
	}
	for i, iss := range []*authztest.Issuer{es, ed} {
		cfg := iss.Config()
		cfg.Keys = token.StaticKeys{keys[i]}
		v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(t.Context(), iss.Mint(t, nil)); err != nil {
			t.Errorf("%s: a token does not verify with its key from JWKS: %v", iss.Alg, err)
		}
	}
}

func TestPublicKeyPEM(t *testing.T) {
	for _, alg := range []string{"RS256", "ES384", "EdDSA"} {
		iss := authztest.NewIssuer(t, alg)
		k, err := token.ParsePublicKeyPEM(iss.PublicKeyPEM(t))
		if err != nil {
			t.Fatalf("%s: %v", alg, err)
		}
		if eq, ok := k.Public.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(iss.PublicKey().Public) {
			t.Errorf("%s: PEM holds another key", alg)
		}
	}
}

func TestMintClaims(t *testing.T) {
	iss := authztest.NewIssuer(t, "HS256")
	in := map[string]any{"exp": nil, "sub": "bob", "aud": []string{"x", "y"}, "null": json.RawMessage("null")}
	tok := iss.Mint(t, in)
	if len(in) != 4 || in["exp"] != nil {
		t.Errorf("Mint modified its claims argument: %v", in)
	}
	c := decode(t, tok, 1)
	if _, ok := c["exp"]; ok {
		t.Error("exp: nil did not remove exp")
	}
	if v, ok := c["null"]; !ok || v != nil {
		t.Errorf("json.RawMessage(null) = %v, %v; want an explicit null", v, ok)
	}
	if c["sub"] != "bob" || c["iss"] != iss.Name || fmt.Sprint(c["aud"]) != "[x y]" {
		t.Errorf("claims = %v", c)
	}
	if _, ok := c["iat"].(float64); !ok {
		t.Errorf("iat = %v, want a number", c["iat"])
	}
}

func TestMintWithHeader(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	tok := iss.MintWithHeader(t, map[string]any{"kid": nil, "jku": "https://evil.test", "alg": "none"}, nil)
	want := map[string]any{"alg": "none", "typ": "JWT", "jku": "https://evil.test"}
	if diff := cmp.Diff(want, decode(t, tok, 0)); diff != "" {
		t.Errorf("header (-want +got):\n%s", diff)
	}
	if sig := strings.Split(tok, ".")[2]; len(sig) == 0 {
		t.Error("MintWithHeader with alg none did not sign with the real key")
	}
}

// fatalTB records Fatalf instead of stopping the test.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestNewIssuerUnsupported(t *testing.T) {
	for _, alg := range []string{"none", "HS512", "rs256", ""} {
		tb := &fatalTB{TB: t}
		func() {
			defer func() {
				if r := recover(); r != nil && r != tb {
					panic(r)
				}
			}()
			authztest.NewIssuer(tb, alg)
		}()
		if !strings.Contains(tb.msg, "unsupported alg") {
			t.Errorf("NewIssuer(%q): Fatalf message %q", alg, tb.msg)
		}
	}
}
