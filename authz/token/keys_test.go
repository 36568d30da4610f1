package token_test

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

func TestStaticKeysLookup(t *testing.T) {
	a1 := token.Key{ID: "a", Public: []byte("1")}
	b := token.Key{ID: "b", Public: []byte("2")}
	a2 := token.Key{ID: "a", Public: []byte("3")}
	none := token.Key{Public: []byte("4")}
	ks := token.StaticKeys{a1, b, a2, none}
	for _, tc := range []struct {
		kid  string
		want []token.Key
	}{
		{kid: "", want: []token.Key{a1, b, a2, none}},
		{kid: "a", want: []token.Key{a1, a2}},
		{kid: "b", want: []token.Key{b}},
		{kid: "c", want: []token.Key{none}}, // an ID-less key stands in for any kid
	} {
		got, err := ks.Lookup(t.Context(), tc.kid)
		if err != nil {
			t.Fatalf("Lookup(%q): %v", tc.kid, err)
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("Lookup(%q) (-want +got):\n%s", tc.kid, diff)
		}
	}
	if got, _ := (token.StaticKeys{a1, b}).Lookup(t.Context(), "c"); got != nil {
		t.Errorf("Lookup(c) without ID-less keys = %v, want nil", got)
	}
	// The single-match result must not let a caller's append clobber the set.
	got, _ := ks.Lookup(t.Context(), "b")
	_ = append(got, token.Key{ID: "x"})
	if ks[2].ID != "a" {
		t.Errorf("append to a Lookup result modified the StaticKeys")
	}
}

func TestHMACKeyCopies(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	k := token.HMACKey(secret)
	secret[0] = 'X'
	if got := k.Public.([]byte)[0]; got != 's' {
		t.Errorf("HMACKey shares the caller's slice: first byte %q", got)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParsePublicKeyPEM(t *testing.T) {
	rs := authztest.NewIssuer(t, "RS256")
	rsaPub := rs.PublicKey().Public.(*rsa.PublicKey)
	ecPriv := ecKey(t, elliptic.P256())
	edPub, edPriv := edKey(t)
	pkix := func(pub crypto.PublicKey) []byte {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatal(err)
		}
		return pemBlock("PUBLIC KEY", der)
	}
	ecPrivDER, err := x509.MarshalECPrivateKey(ecPriv)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := authztest.NewCA(t, "ca").Issue(t, authztest.LeafOptions{CommonName: "issuer", Key: ecPriv}).CertPEM

	for _, tc := range []struct {
		name    string
		data    []byte
		want    crypto.PublicKey
		wantErr string
	}{
		{name: "pkix rsa", data: pkix(rsaPub), want: rsaPub},
		{name: "pkix ecdsa", data: pkix(&ecPriv.PublicKey), want: &ecPriv.PublicKey},
		{name: "pkix ed25519", data: pkix(edPub), want: edPub},
		{name: "pkcs1 rsa", data: pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rsaPub)), want: rsaPub},
		{name: "certificate", data: certPEM, want: &ecPriv.PublicKey},
		{name: "leading text and trailing blocks", data: append(append([]byte("comment\n"), pkix(edPub)...), pemBlock("CERTIFICATE", []byte("x"))...), want: edPub},
		{name: "weak rsa", data: pkix(&weakRSA().PublicKey), wantErr: "rsa key has 1024 bits"},
		{name: "ec private key", data: pemBlock("EC PRIVATE KEY", ecPrivDER), wantErr: "is a private key"},
		{name: "pkcs8 private key", data: pemBlock("PRIVATE KEY", pkcs8), wantErr: "is a private key"},
		// A private key after the public one: the file is a secret kept
		// where only a public key belongs.
		{name: "private key after the public key", data: append(pkix(edPub), pemBlock("PRIVATE KEY", pkcs8)...), wantErr: "also holds a private key"},
		{name: "OpenSSH private key", data: pemBlock("OPENSSH PRIVATE KEY", []byte("junk")), wantErr: "is a private key"},
		{name: "not pem", data: []byte("hello"), wantErr: "no pem block"},
		{name: "empty", data: nil, wantErr: "no pem block"},
		{name: "bad der", data: pemBlock("PUBLIC KEY", []byte("junk")), wantErr: "parse PUBLIC KEY"},
		{name: "unknown block", data: pemBlock("OPENSSH THING", []byte("junk")), wantErr: "unsupported pem block"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.ParsePublicKeyPEM(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePublicKeyPEM: %v", err)
			}
			if eq, ok := got.Public.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(tc.want) {
				t.Errorf("key = %T %v, want %T", got.Public, got.Public, tc.want)
			}
			if got.ID != "" || got.Algorithm != "" {
				t.Errorf("ID, Algorithm = %q, %q; want empty", got.ID, got.Algorithm)
			}
		})
	}
}

// TestParsePublicKeyPEMFile verifies a token end to end with a key parsed
// from PEM as a public_key_file holds it.
func TestParsePublicKeyPEMFile(t *testing.T) {
	for _, alg := range []string{"RS256", "ES384", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			iss := authztest.NewIssuer(t, alg)
			k, err := token.ParsePublicKeyPEM(iss.PublicKeyPEM(t))
			if err != nil {
				t.Fatal(err)
			}
			k.ID = iss.KeyID
			cfg := iss.Config()
			cfg.Keys = token.StaticKeys{k}
			v := newVerifier(t, token.Options{Issuers: []token.Issuer{cfg}, Now: time.Now})
			if _, err := v.Verify(t.Context(), iss.Mint(t, nil)); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

// jwk returns key as a JWK JSON object (a map so tests can edit members).
func jwk(t testing.TB, key any, kid string, alg jwkset.ALG, private bool) map[string]any {
	t.Helper()
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{
		Metadata: jwkset.JWKMetadataOptions{KID: kid, ALG: alg},
		Marshal:  jwkset.JWKMarshalOptions{Private: private},
	})
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, j.Marshal()), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwks(t testing.TB, keys ...map[string]any) []byte {
	t.Helper()
	if keys == nil {
		keys = []map[string]any{}
	}
	return mustJSON(t, map[string]any{"keys": keys})
}

func edit(m map[string]any, kv ...any) map[string]any {
	out := map[string]any{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
			continue
		}
		out[kv[i].(string)] = kv[i+1]
	}
	return out
}

func TestParseJWKS(t *testing.T) {
	rsIss := authztest.NewIssuer(t, "RS256")
	rsaPriv := func() *rsa.PrivateKey {
		// A private key is needed only to prove it is refused; the 1024-bit one will do.
		return weakRSA()
	}()
	rsaPub := rsIss.PublicKey().Public.(*rsa.PublicKey)
	ecPriv := ecKey(t, elliptic.P256())
	ec384 := ecKey(t, elliptic.P384())
	edPub, edPriv := edKey(t)

	rsaJWK := jwk(t, rsaPub, "rsa-1", jwkset.AlgRS256, false)
	ecJWK := jwk(t, &ecPriv.PublicKey, "ec-1", "", false)
	ec384JWK := jwk(t, &ec384.PublicKey, "ec-2", jwkset.AlgES384, false)
	edJWK := jwk(t, edPub, "ed-1", jwkset.AlgEdDSA, false)

	for _, tc := range []struct {
		name    string
		data    []byte
		want    []token.Key
		wantErr string
	}{
		{name: "all types", data: jwks(t, rsaJWK, ecJWK, ec384JWK, edJWK), want: []token.Key{
			{ID: "rsa-1", Algorithm: "RS256", Public: rsaPub},
			{ID: "ec-1", Public: &ecPriv.PublicKey},
			{ID: "ec-2", Algorithm: "ES384", Public: &ec384.PublicKey},
			{ID: "ed-1", Algorithm: "EdDSA", Public: edPub},
		}},
		{name: "no alg leaves Algorithm empty", data: jwks(t, edit(rsaJWK, "alg", nil)), want: []token.Key{{ID: "rsa-1", Public: rsaPub}}},
		{name: "use sig kept", data: jwks(t, edit(ecJWK, "use", "sig")), want: []token.Key{{ID: "ec-1", Public: &ecPriv.PublicKey}}},
		{name: "use enc skipped", data: jwks(t, edit(rsaJWK, "use", "enc", "alg", nil), ecJWK), want: []token.Key{{ID: "ec-1", Public: &ecPriv.PublicKey}}},
		{name: "encryption alg skipped", data: jwks(t, edit(rsaJWK, "alg", "RSA-OAEP-256")), want: nil},
		{name: "key_ops without verify skipped", data: jwks(t, edit(ecJWK, "key_ops", []string{"encrypt"})), want: nil},
		{name: "key_ops with verify kept", data: jwks(t, edit(ecJWK, "key_ops", []string{"verify"})), want: []token.Key{{ID: "ec-1", Public: &ecPriv.PublicKey}}},
		{name: "unknown kty skipped", data: jwks(t, map[string]any{"kty": "XYZ", "kid": "x"}, edJWK), want: []token.Key{{ID: "ed-1", Algorithm: "EdDSA", Public: edPub}}},
		{name: "x25519 skipped", data: jwks(t, map[string]any{"kty": "OKP", "crv": "X25519", "x": edJWK["x"]}), want: nil},
		{name: "x5c ignored", data: jwks(t, edit(ecJWK, "x5c", []string{"not base64!"})), want: []token.Key{{ID: "ec-1", Public: &ecPriv.PublicKey}}},
		{name: "empty set", data: jwks(t), want: nil},
		{name: "rsa private key", data: jwks(t, jwk(t, rsaPriv, "p", jwkset.AlgRS256, true)), wantErr: `key 0: holds private key material ("d")`},
		{name: "ec private key", data: jwks(t, ecJWK, jwk(t, ecPriv, "p", "", true)), wantErr: `key 1: holds private key material ("d")`},
		{name: "ed25519 private key", data: jwks(t, jwk(t, edPriv, "p", "", true)), wantErr: "private key material"},
		{name: "private member even when use enc", data: jwks(t, edit(ecJWK, "use", "enc", "d", "AAAA")), wantErr: "private key material"},
		{name: "oct key", data: jwks(t, map[string]any{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw", "alg": "HS256"}), wantErr: "symmetric"},
		{name: "rsa key with HS256 alg", data: jwks(t, edit(rsaJWK, "alg", "HS256")), wantErr: "algorithm HS256 does not fit the rsa key"},
		{name: "p-256 key with ES384 alg", data: jwks(t, edit(ecJWK, "alg", "ES384")), wantErr: "does not fit the ecdsa P-256 key"},
		{name: "weak rsa", data: jwks(t, jwk(t, &rsaPriv.PublicKey, "w", "", false)), wantErr: "rsa key has 1024 bits"},
		{name: "ec point off curve", data: jwks(t, edit(ecJWK, "y", ecJWK["x"])), wantErr: "key 0"},
		{name: "bad base64", data: jwks(t, edit(ecJWK, "x", "!!")), wantErr: "key 0"},
		{name: "kid not a string", data: jwks(t, edit(ecJWK, "kid", 3)), wantErr: `"kid" is not a string`},
		{name: "key not an object", data: []byte(`{"keys":[1]}`), wantErr: "not a json object"},
		{name: "missing keys", data: []byte(`{}`), wantErr: `missing "keys"`},
		{name: "not json", data: []byte(`{`), wantErr: "jwks"},
		{name: "huge rsa exponent", data: jwks(t, edit(rsaJWK, "e", "AQAAAAAAAAAAAQ")), wantErr: "exponent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := token.ParseJWKS(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if got != nil {
					t.Errorf("keys returned with an error: %v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKS: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseJWKSVerify verifies tokens end to end with keys from a JWKS.
func TestParseJWKSVerify(t *testing.T) {
	var objs []map[string]any
	var issuers []*authztest.Issuer
	for _, alg := range []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"} {
		iss := authztest.NewIssuer(t, alg)
		issuers = append(issuers, iss)
		objs = append(objs, jwk(t, iss.PublicKey().Public, iss.KeyID, jwkset.ALG(alg), false))
	}
	keys, err := token.ParseJWKS(jwks(t, objs...))
	if err != nil {
		t.Fatal(err)
	}
	cfg := token.Issuer{
		Issuer:     authztest.DefaultName,
		Audiences:  []string{authztest.DefaultAudience},
		Algorithms: []string{"RS256", "PS256", "ES256", "ES384", "EdDSA"},
		Keys:       token.StaticKeys(keys),
	}
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{cfg}, Now: time.Now})
	for _, iss := range issuers {
		got, err := v.Verify(t.Context(), iss.Mint(t, nil))
		if err != nil {
			t.Errorf("%s: Verify: %v", iss.Alg, err)
			continue
		}
		if got.KeyID != iss.KeyID {
			t.Errorf("%s: KeyID = %q, want %q", iss.Alg, got.KeyID, iss.KeyID)
		}
	}
	// RS256 and PS256 share the RSA key, but the JWKS pins each kid to its
	// alg: a PS256 token naming the RS256 kid is refused.
	ps := issuers[1]
	tok := ps.MintWithHeader(t, map[string]any{"kid": issuers[0].KeyID}, nil)
	got, err := v.Verify(t.Context(), tok)
	checkDeny(t, tok, got, err, token.ErrDisallowedAlg)
}

// TestIDLessKeyAcceptsAnyKID: an issuer configured with one key and no kid
// (a PEM public key) verifies its tokens whatever kid they carry, while a
// key with an ID still only answers to that ID.
func TestIDLessKeyAcceptsAnyKID(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	cfg := is.Config()
	cfg.Keys = token.StaticKeys{{Public: is.PublicKey().Public}}
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	for _, kid := range []any{"rotating-kid-7", nil} {
		if _, err := v.Verify(t.Context(), is.MintWithHeader(t, map[string]any{"kid": kid}, nil)); err != nil {
			t.Errorf("kid %v: %v", kid, err)
		}
	}
	cfg.Keys = token.StaticKeys{{ID: "k1", Public: is.PublicKey().Public}}
	v, err = token.NewVerifier(token.Options{Issuers: []token.Issuer{cfg}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(t.Context(), is.MintWithHeader(t, map[string]any{"kid": "k2"}, nil)); !errors.Is(err, token.ErrUnknownKID) {
		t.Errorf("kid k2 against key k1: %v, want unknown_kid", err)
	}
}

// TestParseJWKSLenient: a bad entry is skipped and reported, the good keys
// are kept, and only a document that is not a key set at all fails.
func TestParseJWKSLenient(t *testing.T) {
	ecPriv := ecKey(t, elliptic.P256())
	ecJWK := jwk(t, &ecPriv.PublicKey, "ec-1", "", false)
	edPub, edPriv := edKey(t)
	edJWK := jwk(t, edPub, "ed-1", jwkset.AlgEdDSA, false)
	good := []token.Key{
		{ID: "ec-1", Public: &ecPriv.PublicKey},
		{ID: "ed-1", Algorithm: "EdDSA", Public: edPub},
	}
	for _, tc := range []struct {
		name        string
		data        []byte
		want        []token.Key
		wantSkipped []string
		wantErr     string
	}{
		{name: "all good", data: jwks(t, ecJWK, edJWK), want: good},
		{name: "private key skipped", data: jwks(t, ecJWK, jwk(t, edPriv, "p", "", true), edJWK),
			want: good, wantSkipped: []string{`key 1: holds private key material ("d")`}},
		{name: "oct and misfit alg skipped", data: jwks(t,
			map[string]any{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0cw"},
			edit(ecJWK, "alg", "ES384"), ecJWK, edJWK),
			want: good, wantSkipped: []string{"key 0: symmetric", "key 1: algorithm ES384 does not fit"}},
		{name: "use enc is not an error", data: jwks(t, edit(ecJWK, "use", "enc"), edJWK), want: good[1:]},
		{name: "nothing usable", data: jwks(t, edit(ecJWK, "x", "!!")), wantSkipped: []string{"key 0"}},
		{name: "missing keys", data: []byte(`{}`), wantErr: `missing "keys"`},
		{name: "not json", data: []byte(`[`), wantErr: "jwks"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, skipped, err := token.ParseJWKSLenient(tc.data)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if got != nil || skipped != nil {
					t.Errorf("keys %v, skipped %v returned with an error", got, skipped)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseJWKSLenient: %v", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("keys (-want +got):\n%s", diff)
			}
			if len(skipped) != len(tc.wantSkipped) {
				t.Fatalf("skipped = %v, want %d errors", skipped, len(tc.wantSkipped))
			}
			for i, want := range tc.wantSkipped {
				if !strings.Contains(skipped[i].Error(), want) {
					t.Errorf("skipped[%d] = %v, want one containing %q", i, skipped[i], want)
				}
			}
			// ParseJWKS refuses exactly the sets ParseJWKSLenient skips in.
			strict, err := token.ParseJWKS(tc.data)
			if (err != nil) != (len(skipped) > 0) {
				t.Errorf("ParseJWKS err = %v with %d skipped", err, len(skipped))
			}
			if err == nil {
				if diff := cmp.Diff(got, strict); diff != "" {
					t.Errorf("ParseJWKS and ParseJWKSLenient differ (-lenient +strict):\n%s", diff)
				}
			}
		})
	}
}

// TestParseJWKSErrorsBounded: a JWK member that the key parser quotes when
// it refuses it (an unknown use or curve) can be as long as the key set
// allows, a megabyte; the error reporting the skipped key, logged at every
// refresh, is bounded whatever its length.
func TestParseJWKSErrorsBounded(t *testing.T) {
	ecPriv := ecKey(t, elliptic.P256())
	ecJWK := jwk(t, &ecPriv.PublicKey, "ec-1", "", false)
	long := strings.Repeat("\x01", 64<<10)
	data := jwks(t, edit(ecJWK, "use", long), edit(ecJWK, "crv", long), ecJWK)
	keys, skipped, err := token.ParseJWKSLenient(data)
	if err != nil {
		t.Fatalf("ParseJWKSLenient: %v", err)
	}
	if len(keys) != 1 || len(skipped) != 2 {
		t.Fatalf("%d keys and %d skipped, want 1 and 2", len(keys), len(skipped))
	}
	for i, s := range skipped {
		if msg := s.Error(); len(msg) > 512 || !strings.HasPrefix(msg, "token: jwks: key ") {
			t.Errorf("skipped[%d] is %d bytes (%.80q...), want at most 512 naming the key", i, len(msg), msg)
		}
	}
	if _, err := token.ParseJWKS(data); err == nil || len(err.Error()) > 2*512 {
		t.Errorf("ParseJWKS error of %d bytes, want one of at most %d", len(fmt.Sprint(err)), 2*512)
	}
}
