// Package authztest provides test helpers for code that verifies tokens
// and callers: an Issuer with a key generated at test time that mints
// signed JWTs, and the token.Issuer configuration that trusts it; a CA that
// issues client and server certificates; in-memory policy snapshots; and
// small helpers for files and concurrently written output.
//
// Keys are generated in memory when a test runs, so no private key is ever
// committed; a test that needs one in a file writes it into its own
// temporary directory. It is meant for tests only.
package authztest

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz/token"
)

// Defaults of a new Issuer.
const (
	DefaultName     = "https://issuer.test"
	DefaultAudience = "verdict-test"
	DefaultSubject  = "alice"
)

// rsaKey is the one RSA key pair shared by every RSA Issuer in a test
// binary. Generating a 2048-bit RSA key takes around 100ms (much more
// under -race), which adds up across many tests; it is the only
// package-level value here, it is created lazily and never changes after.
// Consequence: two RS256/PS256 Issuers in the same test binary hold the
// same key pair. To test "signed by a key the verifier does not trust",
// use an Issuer of another algorithm family (ES256 and EdDSA keys are
// fresh per Issuer).
var rsaKey = sync.OnceValues(func() (*rsa.PrivateKey, error) {
	return rsa.GenerateKey(rand.Reader, 2048)
})

// Issuer is a test token issuer with a freshly generated key (see rsaKey
// for the RSA exception). Name, Audience, Alg and KeyID may be changed
// before minting; Config and Mint read them each time. An Issuer is safe
// for concurrent use as long as its fields are not changed meanwhile.
type Issuer struct {
	// Name is the iss claim and the configured issuer ("https://issuer.test").
	Name string
	// Audience is the default aud claim and the configured audience ("verdict-test").
	Audience string
	// Alg is the signing algorithm given to NewIssuer.
	Alg string
	// KeyID is the kid header and the configured key's ID ("test-" + lowercase Alg).
	KeyID string

	method jwt.SigningMethod
	signer any              // *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey or []byte
	public crypto.PublicKey // the matching public key, or the same []byte
}

// NewIssuer returns an Issuer for alg: RS256 and PS256 use an RSA 2048 key,
// ES256 a P-256 key, ES384 a P-384 key, EdDSA an Ed25519 key and HS256 a
// random 32-byte secret. Any other alg fails the test.
func NewIssuer(tb testing.TB, alg string) *Issuer {
	tb.Helper()
	i := &Issuer{
		Name:     DefaultName,
		Audience: DefaultAudience,
		Alg:      alg,
		KeyID:    "test-" + strings.ToLower(alg),
	}
	switch alg {
	case "RS256", "PS256":
		k, err := rsaKey()
		if err != nil {
			tb.Fatalf("authztest: generate rsa key: %v", err)
		}
		i.signer, i.public = k, &k.PublicKey
	case "ES256", "ES384":
		curve := elliptic.P256()
		if alg == "ES384" {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			tb.Fatalf("authztest: generate ecdsa key: %v", err)
		}
		i.signer, i.public = k, &k.PublicKey
	case "EdDSA":
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			tb.Fatalf("authztest: generate ed25519 key: %v", err)
		}
		i.signer, i.public = priv, pub
	case "HS256":
		secret := make([]byte, 32)
		rand.Read(secret)
		i.signer, i.public = secret, secret
	default:
		tb.Fatalf("authztest: unsupported alg %q (want RS256, PS256, ES256, ES384, EdDSA or HS256)", alg)
	}
	i.method = jwt.GetSigningMethod(alg)
	return i
}

// PublicKey returns the verification key: the public key (or the HMAC
// secret for HS256) with ID KeyID and no pinned Algorithm.
func (i *Issuer) PublicKey() token.Key {
	return token.Key{ID: i.KeyID, Public: i.public}
}

// Config returns the token.Issuer that trusts i: Issuer Name, Audiences
// [Audience], Algorithms [Alg] and Keys holding PublicKey.
func (i *Issuer) Config() token.Issuer {
	return token.Issuer{
		Issuer:     i.Name,
		Audiences:  []string{i.Audience},
		Algorithms: []string{i.Alg},
		Keys:       token.StaticKeys{i.PublicKey()},
	}
}

// PublicKeyPEM returns PublicKey as a PEM PUBLIC KEY block (PKIX), as a
// public_key_file holds it. An HS256 Issuer has no public key and fails
// the test.
func (i *Issuer) PublicKeyPEM(tb testing.TB) []byte {
	tb.Helper()
	der, err := x509.MarshalPKIXPublicKey(i.public)
	if err != nil {
		tb.Fatalf("authztest: public key of %s issuer %s: %v", i.Alg, i.Name, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// JWKS returns a JSON Web Key Set of the issuers' public keys, each with
// kid KeyID and no alg, as an identity provider publishes them. An HS256
// Issuer has no public key to publish and fails the test.
func JWKS(tb testing.TB, issuers ...*Issuer) []byte {
	tb.Helper()
	ctx := context.Background()
	set := jwkset.NewMemoryStorage()
	for _, i := range issuers {
		if _, ok := i.public.([]byte); ok {
			tb.Fatalf("authztest: JWKS of %s issuer %s: an HMAC secret is not published", i.Alg, i.Name)
		}
		j, err := jwkset.NewJWKFromKey(i.public, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: i.KeyID}})
		if err != nil {
			tb.Fatalf("authztest: JWK of %s: %v", i.KeyID, err)
		}
		if err := set.KeyWrite(ctx, j); err != nil {
			tb.Fatalf("authztest: JWK of %s: %v", i.KeyID, err)
		}
	}
	raw, err := set.JSONPublic(ctx)
	if err != nil {
		tb.Fatalf("authztest: JWKS: %v", err)
	}
	return raw
}

// PrivateJWK returns a P-256 private key made for the test as a JWK object
// (JSON), for policies that sign (io.jwt.encode_sign). It is never written
// anywhere.
func PrivateJWK(tb testing.TB) string {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("authztest: generate P-256 key: %v", err)
	}
	j, err := jwkset.NewJWKFromKey(key, jwkset.JWKOptions{Marshal: jwkset.JWKMarshalOptions{Private: true}})
	if err != nil {
		tb.Fatalf("authztest: JWK of a P-256 key: %v", err)
	}
	raw, err := json.Marshal(j.Marshal())
	if err != nil {
		tb.Fatalf("authztest: JWK of a P-256 key: %v", err)
	}
	return string(raw)
}

// Mint returns a compact JWT signed with Alg and carrying kid KeyID. The
// claims iss (Name), aud (Audience), sub ("alice"), iat (now) and exp (now
// plus one hour) are added when absent from claims. A claim whose value is
// nil is left out, so Mint(tb, map[string]any{"exp": nil}) mints a token
// without exp; to send an explicit JSON null use json.RawMessage("null").
// claims is not modified.
func (i *Issuer) Mint(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return i.MintWithHeader(tb, nil, claims)
}

// MintWithHeader is Mint with header parameters set after the defaults
// (alg Alg, typ "JWT", kid KeyID): an entry adds or overrides one, such as
// "kid", "jwk" or "jku"; a nil value deletes one. The signature is always
// made with the Issuer's real key and Alg, whatever the header's alg says,
// which is what a test of algorithm confusion needs.
func (i *Issuer) MintWithHeader(tb testing.TB, header map[string]any, claims map[string]any) string {
	tb.Helper()
	now := time.Now()
	c := jwt.MapClaims{
		"iss": i.Name,
		"aud": i.Audience,
		"sub": DefaultSubject,
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
			continue
		}
		c[k] = v
	}
	t := jwt.NewWithClaims(i.method, c)
	t.Header["kid"] = i.KeyID
	for k, v := range header {
		if v == nil {
			delete(t.Header, k)
			continue
		}
		t.Header[k] = v
	}
	s, err := t.SignedString(i.signer)
	if err != nil {
		tb.Fatalf("authztest: sign token: %v", err)
	}
	return s
}
