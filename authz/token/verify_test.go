package token_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// now is the fixed clock of the table tests.
var testNow = time.Unix(1_900_000_000, 0)

// claimsAt returns valid claims for iss relative to testNow, with extra
// merged in (nil values are removed by the authztest minting).
func claimsAt(iss string, extra map[string]any) map[string]any {
	c := map[string]any{
		"iss": iss,
		"aud": authztest.DefaultAudience,
		"sub": "alice",
		"iat": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rawJWT assembles a compact JWS from a header and payload (marshalled to
// JSON unless already []byte) and a signature, without any checks.
func rawJWT(t testing.TB, header, payload any, sig []byte) string {
	t.Helper()
	seg := func(v any) string {
		if b, ok := v.([]byte); ok {
			return b64(b)
		}
		return b64(mustJSON(t, v))
	}
	return seg(header) + "." + seg(payload) + "." + b64(sig)
}

// hmacJWT signs header and payload with HS256 under secret.
func hmacJWT(t testing.TB, header, payload any, secret []byte) string {
	t.Helper()
	unsigned := strings.TrimSuffix(rawJWT(t, header, payload, nil), ".")
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(unsigned))
	return unsigned + "." + b64(m.Sum(nil))
}

// tamperSig flips one bit of the decoded signature and re-encodes it.
func tamperSig(t testing.TB, tok string) string {
	t.Helper()
	i := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[i+1:])
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)/2] ^= 0x01
	return tok[:i+1] + b64(sig)
}

// keySetFunc adapts a function to token.KeySet.
type keySetFunc func(ctx context.Context, kid string) ([]token.Key, error)

func (f keySetFunc) Lookup(ctx context.Context, kid string) ([]token.Key, error) { return f(ctx, kid) }

func newVerifier(t testing.TB, opts token.Options) *token.Verifier {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	v, err := token.NewVerifier(opts)
	if err != nil {
		t.Fatalf("NewVerifier: %v", err)
	}
	return v
}

// named returns a fresh issuer for alg with the given name and key ID.
func named(t testing.TB, alg, name, kid string) *authztest.Issuer {
	t.Helper()
	i := authztest.NewIssuer(t, alg)
	i.Name = name
	if kid != "" {
		i.KeyID = kid
	}
	return i
}

func TestVerify(t *testing.T) {
	rs := named(t, "RS256", "https://rs.test", "")
	ps := named(t, "PS256", "https://ps.test", "")
	es := named(t, "ES256", "https://es.test", "")
	es384 := named(t, "ES384", "https://es384.test", "")
	ed := named(t, "EdDSA", "https://ed.test", "")
	hs := named(t, "HS256", "https://hs.test", "")
	other := named(t, "ES256", "https://other.test", "other-key")
	noExp := named(t, "ES256", "https://noexp.test", "")
	// attacker holds its own ES256 key and claims to be es.
	attackerPriv := ecKey(t, elliptic.P256())
	attackerKey := &attackerPriv.PublicKey
	attackerMint := func(header map[string]any, claims map[string]any) string {
		return signJWT(t, jwt.SigningMethodES256, attackerPriv, mergeHeader(map[string]any{"kid": es.KeyID}, header), claims)
	}

	// pinned: an RSA key pinned to RS256, under an issuer allowing RS256 and PS256.
	pinned := named(t, "RS256", "https://pinned.test", "pinned")
	pinnedCfg := pinned.Config()
	pinnedCfg.Algorithms = []string{"RS256", "PS256"}
	pinnedKey := pinned.PublicKey()
	pinnedKey.Algorithm = "RS256"
	pinnedCfg.Keys = token.StaticKeys{pinnedKey}
	// pinnedPS signs PS256 with the same RSA key (authztest shares it).
	pinnedPS := named(t, "PS256", pinned.Name, pinned.KeyID)

	// curve: the issuer allows ES256 and ES384 but holds only a P-384 key.
	curve := named(t, "ES384", "https://curve.test", "p384")
	curveCfg := curve.Config()
	curveCfg.Algorithms = []string{"ES256", "ES384"}
	curveES256 := named(t, "ES256", curve.Name, curve.KeyID)

	noExpCfg := noExp.Config()
	noExpCfg.ExpOptional = true

	down := token.Issuer{
		Issuer:     "https://down.test",
		Audiences:  []string{authztest.DefaultAudience},
		Algorithms: []string{"ES256"},
		Keys: keySetFunc(func(context.Context, string) ([]token.Key, error) {
			return nil, errors.New("jwks fetch: connection refused")
		}),
	}

	v := newVerifier(t, token.Options{
		Issuers: []token.Issuer{
			rs.Config(), ps.Config(), es.Config(), es384.Config(), ed.Config(), hs.Config(),
			other.Config(), noExpCfg, pinnedCfg, curveCfg, down,
		},
		Leeway: 30 * time.Second,
	})

	// RSA public key bytes an attacker would use as an HMAC secret.
	rsaPub := rs.PublicKey().Public.(*rsa.PublicKey)
	rsaDER, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: rsaDER})
	rsaPKCS1 := x509.MarshalPKCS1PublicKey(rsaPub)

	// attackerJWK is the attacker's public key as a JWK for a jwk header.
	ajwk, err := jwkset.NewJWKFromKey(attackerKey, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: "evil"}})
	if err != nil {
		t.Fatal(err)
	}
	attackerJWK := ajwk.Marshal()
	// A certificate for the attacker's key, as in an x5c header.
	attackerX5C := base64.StdEncoding.EncodeToString(
		authztest.NewCA(t, "attacker ca").Issue(t, authztest.LeafOptions{CommonName: "attacker", Key: attackerPriv}).Cert.Raw)

	rsClaims := claimsAt(rs.Name, nil)
	esClaims := claimsAt(es.Name, nil)
	good := es.Mint(t, esClaims)
	goodParts := strings.Split(good, ".")
	fields := es.Mint(t, claimsAt(es.Name, map[string]any{"role": "admin", "n": 42}))

	type tc struct {
		name  string
		tok   string
		want  error // nil: accepted
		check func(t *testing.T, got *token.Verified)
	}
	cases := []tc{
		// Positive cases, every family.
		{name: "rs256 ok", tok: rs.Mint(t, rsClaims)},
		{name: "ps256 ok", tok: ps.Mint(t, claimsAt(ps.Name, nil))},
		{name: "es256 ok", tok: good},
		{name: "es384 ok", tok: es384.Mint(t, claimsAt(es384.Name, nil))},
		{name: "eddsa ok", tok: ed.Mint(t, claimsAt(ed.Name, nil))},
		{name: "hs256 ok", tok: hs.Mint(t, claimsAt(hs.Name, nil))},
		{name: "no kid tries the issuer's compatible keys", tok: es.MintWithHeader(t, map[string]any{"kid": nil}, esClaims),
			check: func(t *testing.T, got *token.Verified) {
				if got.KeyID != es.KeyID {
					t.Errorf("KeyID = %q, want %q", got.KeyID, es.KeyID)
				}
			}},
		{name: "verified fields", tok: fields,
			check: func(t *testing.T, got *token.Verified) {
				want := &token.Verified{
					Issuer:    es.Name,
					Subject:   "alice",
					KeyID:     es.KeyID,
					ExpiresAt: testNow.Add(time.Hour),
					Claims: map[string]any{
						"iss": es.Name, "aud": authztest.DefaultAudience, "sub": "alice", "role": "admin",
						"n":   json.Number("42"),
						"iat": json.Number("1899999940"), "exp": json.Number("1900003600"),
					},
					Content: sha256.Sum256([]byte(fields[:strings.LastIndexByte(fields, '.')])),
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Verified (-want +got):\n%s", diff)
				}
			}},

		// alg none, in any case, with and without a signature.
		{name: "alg none empty sig", tok: rawJWT(t, map[string]any{"alg": "none", "typ": "JWT"}, esClaims, nil), want: token.ErrDisallowedAlg},
		{name: "alg None empty sig", tok: rawJWT(t, map[string]any{"alg": "None"}, esClaims, nil), want: token.ErrDisallowedAlg},
		{name: "alg NONE empty sig", tok: rawJWT(t, map[string]any{"alg": "NONE"}, esClaims, nil), want: token.ErrDisallowedAlg},
		{name: "alg nOnE empty sig", tok: rawJWT(t, map[string]any{"alg": "nOnE"}, esClaims, nil), want: token.ErrDisallowedAlg},
		{name: "alg none with sig", tok: rawJWT(t, map[string]any{"alg": "none", "kid": es.KeyID}, esClaims, []byte("signature")), want: token.ErrDisallowedAlg},
		{name: "alg NONE with real sig", tok: es.MintWithHeader(t, map[string]any{"alg": "NONE"}, esClaims), want: token.ErrDisallowedAlg},
		{name: "alg none unknown issuer", tok: rawJWT(t, map[string]any{"alg": "none"}, claimsAt("https://nobody.test", nil), nil), want: token.ErrDisallowedAlg},

		// Other algorithm abuse.
		{name: "unsupported alg", tok: rawJWT(t, map[string]any{"alg": "HS1"}, esClaims, []byte("x")), want: token.ErrDisallowedAlg},
		{name: "lowercase alg", tok: es.MintWithHeader(t, map[string]any{"alg": "es256"}, esClaims), want: token.ErrDisallowedAlg},
		{name: "alg allowed elsewhere not for issuer", tok: es.MintWithHeader(t, map[string]any{"alg": "ES384"}, esClaims), want: token.ErrDisallowedAlg},
		{name: "pinned key refuses other alg", tok: pinnedPS.Mint(t, claimsAt(pinned.Name, nil)), want: token.ErrDisallowedAlg},
		{name: "pinned key accepts its alg", tok: pinned.Mint(t, claimsAt(pinned.Name, nil))},
		{name: "es256 token with p-384 key", tok: curveES256.Mint(t, claimsAt(curve.Name, nil)), want: token.ErrDisallowedAlg},
		{name: "es384 token with p-384 key", tok: curve.Mint(t, claimsAt(curve.Name, nil))},

		// RSA public key used as an HMAC secret, HS256 not allowed.
		{name: "rsa pem as hmac secret", tok: hmacJWT(t, map[string]any{"alg": "HS256", "kid": rs.KeyID}, rsClaims, rsaPEM), want: token.ErrDisallowedAlg},
		{name: "rsa der as hmac secret", tok: hmacJWT(t, map[string]any{"alg": "HS256", "kid": rs.KeyID}, rsClaims, rsaDER), want: token.ErrDisallowedAlg},
		{name: "rsa pkcs1 as hmac secret no kid", tok: hmacJWT(t, map[string]any{"alg": "HS256"}, rsClaims, rsaPKCS1), want: token.ErrDisallowedAlg},

		// Header-supplied keys are never used.
		{name: "jwk header with attacker key", tok: attackerMint(map[string]any{"jwk": attackerJWK}, esClaims), want: token.ErrBadSignature},
		{name: "jwk header attacker kid", tok: attackerMint(map[string]any{"jwk": attackerJWK, "kid": "evil"}, esClaims), want: token.ErrUnknownKID},
		{name: "jwk header no kid", tok: attackerMint(map[string]any{"jwk": attackerJWK, "kid": nil}, esClaims), want: token.ErrBadSignature},
		{name: "jku header", tok: attackerMint(map[string]any{"jku": "https://evil.test/jwks.json"}, esClaims), want: token.ErrBadSignature},
		{name: "x5u header", tok: attackerMint(map[string]any{"x5u": "https://evil.test/cert.pem"}, esClaims), want: token.ErrBadSignature},
		{name: "x5c header", tok: attackerMint(map[string]any{"x5c": []string{attackerX5C}}, esClaims), want: token.ErrBadSignature},
		{name: "jwk header on a good token is ignored", tok: es.MintWithHeader(t, map[string]any{"jwk": attackerJWK, "jku": "https://evil.test/"}, esClaims)},

		// Key selection.
		{name: "unknown kid", tok: es.MintWithHeader(t, map[string]any{"kid": "nope"}, esClaims), want: token.ErrUnknownKID},
		{name: "kid of another issuer's key", tok: other.Mint(t, claimsAt(es.Name, nil)), want: token.ErrUnknownKID},
		{name: "another issuer's key no kid", tok: other.MintWithHeader(t, map[string]any{"kid": nil}, claimsAt(es.Name, nil)), want: token.ErrBadSignature},
		{name: "keys unavailable", tok: es.Mint(t, claimsAt(down.Issuer, nil)), want: token.ErrKeysUnavailable},

		// Signature.
		{name: "wrong signature", tok: tamperSig(t, good), want: token.ErrBadSignature},
		{name: "signature of other payload", tok: goodParts[0] + "." + b64(mustJSON(t, claimsAt(es.Name, map[string]any{"sub": "root"}))) + "." + goodParts[2], want: token.ErrBadSignature},
		{name: "empty signature", tok: goodParts[0] + "." + goodParts[1] + ".", want: token.ErrBadSignature},

		// Time.
		{name: "expired", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), want: token.ErrExpired},
		{name: "expired beyond leeway", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": testNow.Add(-31 * time.Second).Unix()})), want: token.ErrExpired},
		{name: "expired within leeway", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": testNow.Add(-10 * time.Second).Unix()}))},
		{name: "exp zero", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": 0})), want: token.ErrExpired},
		{name: "nbf future", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"nbf": testNow.Add(time.Hour).Unix()})), want: token.ErrNotYetValid},
		{name: "nbf within leeway", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"nbf": testNow.Add(10 * time.Second).Unix()}))},
		{name: "iat future", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"iat": testNow.Add(time.Hour).Unix()})), want: token.ErrNotYetValid},
		{name: "iat within leeway", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"iat": testNow.Add(10 * time.Second).Unix()}))},
		{name: "missing exp", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": nil})), want: token.ErrMissingClaim},
		{name: "missing exp with ExpOptional", tok: noExp.Mint(t, claimsAt(noExp.Name, map[string]any{"exp": nil})),
			check: func(t *testing.T, got *token.Verified) {
				if !got.ExpiresAt.IsZero() {
					t.Errorf("ExpiresAt = %v, want zero", got.ExpiresAt)
				}
			}},
		{name: "expired with ExpOptional", tok: noExp.Mint(t, claimsAt(noExp.Name, map[string]any{"exp": testNow.Add(-time.Hour).Unix()})), want: token.ErrExpired},
		{name: "exp is a string", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": "tomorrow"})), want: token.ErrMalformed},
		{name: "nbf out of range", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"nbf": json.Number("1e999")})), want: token.ErrMalformed},
		{name: "exp out of range", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": json.Number("-1e300")})), want: token.ErrMalformed},
		{name: "exp far future", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": json.Number("1e15")}))},
		{name: "exp fractional", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": json.Number("1900000000.5")}))},
		{name: "exp is null", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"exp": json.RawMessage("null")})), want: token.ErrMalformed},

		// Issuer.
		{name: "unknown iss", tok: es.Mint(t, claimsAt("https://nobody.test", nil)), want: token.ErrBadIssuer},
		{name: "iss prefix", tok: es.Mint(t, claimsAt("https://es.tes", nil)), want: token.ErrBadIssuer},
		{name: "iss suffix", tok: es.Mint(t, claimsAt("https://es.test/", nil)), want: token.ErrBadIssuer},
		{name: "iss case", tok: es.Mint(t, claimsAt("HTTPS://ES.TEST", nil)), want: token.ErrBadIssuer},
		{name: "iss space", tok: es.Mint(t, claimsAt(" https://es.test", nil)), want: token.ErrBadIssuer},
		{name: "iss missing", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"iss": nil})), want: token.ErrBadIssuer},
		{name: "iss not a string", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"iss": []string{es.Name}})), want: token.ErrBadIssuer},
		{name: "iss of another issuer signed by es", tok: es.Mint(t, claimsAt(ed.Name, nil)), want: token.ErrDisallowedAlg},
		{name: "iss of another es256 issuer signed by es", tok: es.Mint(t, claimsAt(other.Name, nil)), want: token.ErrUnknownKID},

		// Audience.
		{name: "aud missing", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": nil})), want: token.ErrBadAudience},
		{name: "aud other", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": "someone-else"})), want: token.ErrBadAudience},
		{name: "aud empty array", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": []string{}})), want: token.ErrBadAudience},
		{name: "aud array all other", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": []string{"a", "b"}})), want: token.ErrBadAudience},
		{name: "aud array containing one good", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": []string{"a", authztest.DefaultAudience, "b"}}))},
		{name: "aud case", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": "VERDICT-TEST"})), want: token.ErrBadAudience},
		{name: "aud not strings", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"aud": []any{1}})), want: token.ErrMalformed},

		// Size.
		{name: "oversized junk", tok: strings.Repeat("!", token.DefaultMaxBytes+1), want: token.ErrTooLarge},
		{name: "oversized valid token", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"pad": strings.Repeat("x", token.DefaultMaxBytes)})), want: token.ErrTooLarge},
		{name: "max size junk is parsed", tok: strings.Repeat("!", token.DefaultMaxBytes), want: token.ErrMalformed},

		// Malformed.
		{name: "empty string", tok: "", want: token.ErrMalformed},
		{name: "one part", tok: "abc", want: token.ErrMalformed},
		{name: "two parts", tok: goodParts[0] + "." + goodParts[1], want: token.ErrMalformed},
		{name: "four parts", tok: good + ".x", want: token.ErrMalformed},
		{name: "bad base64 header", tok: "!!!." + goodParts[1] + "." + goodParts[2], want: token.ErrMalformed},
		{name: "padded base64 header", tok: goodParts[0] + "==." + goodParts[1] + "." + goodParts[2], want: token.ErrMalformed},
		{name: "std base64 payload", tok: goodParts[0] + "." + base64.StdEncoding.EncodeToString(mustJSON(t, map[string]any{"a": "??>>"})) + "." + goodParts[2], want: token.ErrMalformed},
		{name: "bad base64 payload", tok: goodParts[0] + ".***." + goodParts[2], want: token.ErrMalformed},
		{name: "bad base64 signature", tok: goodParts[0] + "." + goodParts[1] + ".***", want: token.ErrMalformed},
		// The base64 decoder skips line breaks even when strict: a valid
		// token with one in its signature verified, each variant a
		// token-cache entry of its own.
		{name: "line feed in the signature", tok: goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:3] + "\n" + goodParts[2][3:], want: token.ErrMalformed},
		{name: "carriage return in the signature", tok: goodParts[0] + "." + goodParts[1] + "." + goodParts[2][:3] + "\r" + goodParts[2][3:], want: token.ErrMalformed},
		{name: "space in the signature", tok: goodParts[0] + "." + goodParts[1] + "." + goodParts[2] + " ", want: token.ErrMalformed},
		{name: "bad json header", tok: rawJWT(t, []byte(`{"alg":"ES256"`), esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header not an object", tok: rawJWT(t, []byte(`["ES256"]`), esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header null", tok: rawJWT(t, []byte(`null`), esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header string", tok: rawJWT(t, []byte(`"ES256"`), esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header no alg", tok: rawJWT(t, map[string]any{"kid": es.KeyID}, esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header alg not a string", tok: rawJWT(t, map[string]any{"alg": 256}, esClaims, []byte("x")), want: token.ErrMalformed},
		{name: "header kid not a string", tok: es.MintWithHeader(t, map[string]any{"kid": 7}, esClaims), want: token.ErrMalformed},
		{name: "header typ not a string", tok: es.MintWithHeader(t, map[string]any{"typ": []string{"JWT"}}, esClaims), want: token.ErrMalformed},
		{name: "header typ anything, no required type", tok: es.MintWithHeader(t, map[string]any{"typ": "whatever"}, esClaims)},
		{name: "header typ absent, no required type", tok: es.MintWithHeader(t, map[string]any{"typ": nil}, esClaims)},
		{name: "crit header", tok: es.MintWithHeader(t, map[string]any{"crit": []string{"exp"}, "exp": 1}, esClaims), want: token.ErrMalformed},
		{name: "bad json payload", tok: rawJWT(t, map[string]any{"alg": "ES256"}, []byte(`{"iss":`), []byte("x")), want: token.ErrMalformed},
		{name: "payload not an object", tok: rawJWT(t, map[string]any{"alg": "ES256"}, []byte(`[1,2]`), []byte("x")), want: token.ErrMalformed},
		{name: "payload null", tok: rawJWT(t, map[string]any{"alg": "ES256"}, []byte(`null`), []byte("x")), want: token.ErrMalformed},
		{name: "payload trailing data", tok: rawJWT(t, map[string]any{"alg": "ES256"}, append(mustJSON(t, esClaims), []byte(`{}`)...), []byte("x")), want: token.ErrMalformed},
		{name: "sub not a string", tok: es.Mint(t, claimsAt(es.Name, map[string]any{"sub": 12})), want: token.ErrMalformed},
	}

	// The same HS256-with-RSA-secret attack against an issuer that allows
	// both RS256 and HS256 but holds only an RSA key.
	both := rs.Config()
	both.Algorithms = []string{"RS256", "HS256"}
	vBoth := newVerifier(t, token.Options{Issuers: []token.Issuer{both}})
	bothCases := []tc{
		{name: "both algs: rsa pem as hmac secret", tok: hmacJWT(t, map[string]any{"alg": "HS256", "kid": rs.KeyID}, rsClaims, rsaPEM), want: token.ErrDisallowedAlg},
		{name: "both algs: rsa der as hmac secret", tok: hmacJWT(t, map[string]any{"alg": "HS256", "kid": rs.KeyID}, rsClaims, rsaDER), want: token.ErrDisallowedAlg},
		{name: "both algs: rsa pkcs1 as hmac secret no kid", tok: hmacJWT(t, map[string]any{"alg": "HS256"}, rsClaims, rsaPKCS1), want: token.ErrDisallowedAlg},
		{name: "both algs: rs256 still works", tok: rs.Mint(t, rsClaims)},
	}

	run := func(v *token.Verifier, cases []tc) {
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				got, err := v.Verify(t.Context(), tc.tok)
				if tc.want == nil {
					if err != nil {
						t.Fatalf("Verify: unexpected error %v", err)
					}
					if got == nil {
						t.Fatal("Verify returned nil, nil")
					}
					if tc.check != nil {
						tc.check(t, got)
					}
					return
				}
				checkDeny(t, tc.tok, got, err, tc.want)
			})
		}
	}
	run(v, cases)
	run(vBoth, bothCases)
}

var allCauses = []error{
	token.ErrTooLarge, token.ErrMalformed, token.ErrDisallowedAlg, token.ErrUnknownKID,
	token.ErrBadSignature, token.ErrExpired, token.ErrNotYetValid, token.ErrBadIssuer,
	token.ErrBadAudience, token.ErrMissingClaim, token.ErrKeysUnavailable,
	token.ErrLifetime, token.ErrBadType, token.ErrMissingKID, token.ErrNoCallerAudiences,
}

// checkDeny asserts a denial with exactly the cause want.
func checkDeny(t *testing.T, tok string, got *token.Verified, err, want error) {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify accepted the token (subject %q), want %v", got.Subject, want)
	}
	if got != nil {
		t.Errorf("Verify returned a Verified with error %v", err)
	}
	if !errors.Is(err, token.ErrInvalid) {
		t.Errorf("error %q does not wrap ErrInvalid", err)
	}
	for _, c := range allCauses {
		if is := errors.Is(err, c); is != (c == want) {
			t.Errorf("errors.Is(%q, %v) = %v, want %v", err, c, is, c == want)
		}
	}
	if r := token.Reason(err); r != want.Error() {
		t.Errorf("Reason = %q, want %q", r, want.Error())
	}
	msg := err.Error()
	if msg != strings.ToLower(msg) {
		t.Errorf("error %q is not lowercase", msg)
	}
	for _, seg := range strings.Split(tok, ".") {
		if len(seg) >= 8 && strings.Contains(msg, seg) {
			t.Errorf("error %q contains part of the token", msg)
		}
	}
}

func TestVerifyMaxBytes(t *testing.T) {
	es := authztest.NewIssuer(t, "ES256")
	tok := es.Mint(t, nil)
	for _, tc := range []struct {
		name     string
		maxBytes int
		want     error
	}{
		{name: "exact", maxBytes: len(tok)},
		{name: "one short", maxBytes: len(tok) - 1, want: token.ErrTooLarge},
		{name: "default", maxBytes: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{es.Config()}, MaxBytes: tc.maxBytes})
			if err != nil {
				t.Fatal(err)
			}
			got, err := v.Verify(t.Context(), tok)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			checkDeny(t, tok, got, err, tc.want)
		})
	}
}

// TestVerifyOversizedNotParsed checks that an oversized token never reaches
// the KeySet or the parser: a token that would otherwise verify is refused,
// and the KeySet is never asked.
func TestVerifyOversizedNotParsed(t *testing.T) {
	es := authztest.NewIssuer(t, "ES256")
	cfg := es.Config()
	calls := 0
	cfg.Keys = keySetFunc(func(ctx context.Context, kid string) ([]token.Key, error) {
		calls++
		return token.StaticKeys{es.PublicKey()}.Lookup(ctx, kid)
	})
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{cfg}, MaxBytes: 300, Now: time.Now})
	small := es.Mint(t, nil)
	if _, err := v.Verify(t.Context(), small); err != nil {
		t.Fatalf("small token: %v", err)
	}
	big := es.Mint(t, map[string]any{"pad": strings.Repeat("x", 300)})
	_, err := v.Verify(t.Context(), big)
	if !errors.Is(err, token.ErrTooLarge) {
		t.Fatalf("big token: err = %v, want too_large", err)
	}
	if calls != 1 {
		t.Errorf("KeySet called %d times, want 1 (only for the small token)", calls)
	}
}

// TestVerifyLookupKID checks that the KeySet is asked for the token's kid,
// and that a KeySet returning keys with other IDs cannot smuggle them in.
func TestVerifyLookupKID(t *testing.T) {
	es := authztest.NewIssuer(t, "ES256")
	cfg := es.Config()
	var asked []string
	cfg.Keys = keySetFunc(func(_ context.Context, kid string) ([]token.Key, error) {
		asked = append(asked, kid)
		k := es.PublicKey()
		k.ID = "different"
		return []token.Key{k}, nil // wrong: ignores kid
	})
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{cfg}, Now: time.Now})
	tok := es.Mint(t, nil)
	got, err := v.Verify(t.Context(), tok)
	checkDeny(t, tok, got, err, token.ErrUnknownKID)
	if diff := cmp.Diff([]string{es.KeyID}, asked); diff != "" {
		t.Errorf("kids asked (-want +got):\n%s", diff)
	}
}

func TestVerifyConcurrent(t *testing.T) {
	issuers := []*authztest.Issuer{
		named(t, "RS256", "https://rs.test", ""),
		named(t, "ES256", "https://es.test", ""),
		named(t, "EdDSA", "https://ed.test", ""),
		named(t, "HS256", "https://hs.test", ""),
	}
	var cfgs []token.Issuer
	var toks []string
	for _, i := range issuers {
		cfgs = append(cfgs, i.Config())
		toks = append(toks, i.Mint(t, nil), tamperSig(t, i.Mint(t, nil)))
	}
	v := newVerifier(t, token.Options{Issuers: cfgs, Now: time.Now})
	done := make(chan error)
	for g := range 8 {
		go func() {
			for n := range 50 {
				tok := toks[(g+n)%len(toks)]
				_, err := v.Verify(context.Background(), tok)
				if wantOK := (g+n)%2 == 0; wantOK != (err == nil) {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Errorf("concurrent Verify: %v", err)
		}
	}
}

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "unknown", err: errors.New("boom"), want: "invalid"},
		{name: "bare ErrInvalid", err: token.ErrInvalid, want: "invalid"},
		{name: "cause without ErrInvalid", err: token.ErrExpired, want: "invalid"},
		{name: "expired", err: errors.Join(token.ErrInvalid, token.ErrExpired), want: "expired"},
		{name: "wrapped again", err: errors.Join(errors.New("ctx"), errors.Join(token.ErrInvalid, token.ErrBadSignature)), want: "bad_signature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := token.Reason(tc.err); got != tc.want {
				t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}

// signJWT signs claims with method and key under header (plus alg).
func signJWT(t testing.TB, method jwt.SigningMethod, key any, header, claims map[string]any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, jwt.MapClaims(claims))
	for k, v := range header {
		if v == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = v
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// mergeHeader returns base with over applied (nil values kept, for signJWT to delete).
func mergeHeader(base, over map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// ecKey is a fresh EC key on curve, for tests that need an unrelated key
// or one of a curve no issuer uses.
func ecKey(t testing.TB, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// edKey is a fresh Ed25519 key pair.
func edKey(t testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return pub, priv
}

// TestVerifyCandidateKeysBounded: a token's signature is checked against
// at most four keys that fit it, so that a key set holding many keys with
// one kid (or many without a kid, the fallback for an unknown one) cannot
// make each forged token cost that many verifications. A token signed by
// one of the first four keys verifies; by the fifth, it is refused, saying
// why.
func TestVerifyCandidateKeysBounded(t *testing.T) {
	signers := make([]*authztest.Issuer, 6)
	var keys token.StaticKeys
	for i := range signers {
		signers[i] = named(t, "ES256", "https://many.test", "k")
		keys = append(keys, signers[i].PublicKey())
	}
	cfg := signers[0].Config()
	cfg.Keys = keys
	v := newVerifier(t, token.Options{Issuers: []token.Issuer{cfg}, Now: time.Now})
	for i, want := range []error{nil, nil, nil, nil, token.ErrBadSignature, token.ErrBadSignature} {
		tok := signers[i].Mint(t, nil)
		_, err := v.Verify(t.Context(), tok)
		if !errors.Is(err, want) && !(want == nil && err == nil) {
			t.Errorf("signed by key %d of %d with kid k: %v, want %v", i+1, len(signers), err, want)
		}
		if want != nil && (err == nil || !strings.Contains(err.Error(), "first 4 keys")) {
			t.Errorf("signed by key %d: error %v does not say that only the first 4 keys are tried", i+1, err)
		}
	}
}

// TestRSAKeySizeBounded: an RSA key over 8,192 bits, or with an exponent
// over 65537, is refused where keys are configured or fetched, as one under
// 2,048 bits is: verifying with a modulus of n bits costs about n², and
// more with a larger exponent.
func TestRSAKeySizeBounded(t *testing.T) {
	big65539 := &rsa.PublicKey{N: new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), 2047), big.NewInt(1)), E: 65539}
	der := x509.MarshalPKCS1PublicKey(big65539)
	if _, err := token.ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: der})); err == nil ||
		!strings.Contains(err.Error(), "exponent 65539") {
		t.Errorf("exponent 65539: %v, want refused", err)
	}
	set := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"e","n":%q,"e":%q}]}`,
		base64.RawURLEncoding.EncodeToString(big65539.N.Bytes()), base64.RawURLEncoding.EncodeToString(big.NewInt(1<<31-1).Bytes()))
	if _, err := token.ParseJWKS([]byte(set)); err == nil || !strings.Contains(err.Error(), "exponent") {
		t.Errorf("exponent 2^31-1 in a key set: %v, want refused", err)
	}
	for _, bits := range []int{8193, 16384} {
		n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
		n.Add(n, big.NewInt(1)) // odd, bits long; a modulus in form only
		e := base64.RawURLEncoding.EncodeToString(big.NewInt(65537).Bytes())
		set := fmt.Sprintf(`{"keys":[{"kty":"RSA","kid":"big","n":%q,"e":%q}]}`, base64.RawURLEncoding.EncodeToString(n.Bytes()), e)
		if _, err := token.ParseJWKS([]byte(set)); err == nil || !strings.Contains(err.Error(), "want 2048 to 8192") {
			t.Errorf("%d-bit key in a key set: %v, want refused", bits, err)
		}
		der := x509.MarshalPKCS1PublicKey(&rsa.PublicKey{N: n, E: 65537})
		if _, err := token.ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: der})); err == nil {
			t.Errorf("%d-bit PEM key accepted", bits)
		}
	}
}
