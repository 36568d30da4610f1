// Package devtoken mints development tokens with a local Ed25519 key, so that
// policy authors and demos can show real decisions without an identity
// provider.
//
// It is not for production: the key sits in a local file (or in memory),
// anyone who can read it can mint any identity, and the issuer it names is
// trusted only when a command is run without a configuration file.
package devtoken

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/verdict-pdp/verdict/authz/token"
)

// The development issuer's names. Audience is for users' tokens;
// CallerAudience is for service tokens (a caller's credential), which
// Verdict accepts only with an audience issued for that purpose.
const (
	Issuer         = "verdict-dev"
	Audience       = "verdict"
	CallerAudience = "verdict-callers"
)

// Minter holds a development signing key. It is safe for concurrent use.
type Minter struct {
	key ed25519.PrivateKey
	kid string
}

// Generate returns a Minter with a fresh in-memory key.
func Generate() (*Minter, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("devtoken: %w", err)
	}
	return newMinter(priv), nil
}

func newMinter(priv ed25519.PrivateKey) *Minter {
	sum := sha256.Sum256(priv.Public().(ed25519.PublicKey))
	return &Minter{key: priv, kid: "dev-" + hex.EncodeToString(sum[:4])}
}

// DefaultKeyPath is where the development key lives unless told otherwise:
// verdict/dev-key.pem under the user's configuration directory, outside any
// source tree so it is never committed by accident.
func DefaultKeyPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("devtoken: %w", err)
	}
	return filepath.Join(dir, "verdict", "dev-key.pem"), nil
}

// Load reads the development key at path. A missing file wraps fs.ErrNotExist.
func Load(path string) (*Minter, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("devtoken: %w", err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("devtoken: %s: no PKCS#8 PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("devtoken: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("devtoken: %s: not an Ed25519 key", path)
	}
	return newMinter(priv), nil
}

// LoadOrCreate loads the key at path, creating it (mode 0600, directories
// 0700) when it does not exist. created reports a new key.
func LoadOrCreate(path string) (m *Minter, created bool, err error) {
	m, err = Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return m, false, err
	}
	if m, err = Generate(); err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(m.key)
	if err != nil {
		return nil, false, fmt.Errorf("devtoken: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("devtoken: %w", err)
	}
	data := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("devtoken: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return nil, false, fmt.Errorf("devtoken: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, false, fmt.Errorf("devtoken: %w", err)
	}
	return m, true, nil
}

// TokenIssuer is the development issuer's verification config: issuer
// "verdict-dev", audience "verdict", EdDSA with this key only.
func (m *Minter) TokenIssuer() token.Issuer {
	return token.Issuer{
		Issuer:     Issuer,
		Audiences:  []string{Audience},
		Algorithms: []string{"EdDSA"},
		Keys: token.StaticKeys{{
			ID: m.kid, Algorithm: "EdDSA", Public: m.key.Public(),
		}},
	}
}

// TokenOptions trusts the development issuer (TokenIssuer) for users'
// tokens, and for service tokens minted with aud CallerAudience.
func (m *Minter) TokenOptions() token.Options {
	return token.Options{Issuers: []token.Issuer{m.TokenIssuer()}, CallerAudiences: []string{CallerAudience}}
}

// PublicKeyPEM is the key's public half as a PEM "PUBLIC KEY" block: what
// an issuer's public_key_file takes, so that a configuration can trust the
// development key under an issuer of its own.
func (m *Minter) PublicKeyPEM() ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(m.key.Public())
	if err != nil {
		return nil, fmt.Errorf("devtoken: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// Mint signs a token for subject sub with the given extra claims (for
// example "roles") valid for ttl from now. iss, aud, sub, iat and exp are set
// unless claims sets them; a service token sets "aud" to CallerAudience.
func (m *Minter) Mint(sub string, claims map[string]any, ttl time.Duration, now time.Time) (string, error) {
	c := jwt.MapClaims{
		"iss": Issuer,
		"aud": Audience,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
	}
	if sub != "" {
		c["sub"] = sub
	}
	for k, v := range claims {
		c[k] = v
	}
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	t.Header["kid"] = m.kid
	s, err := t.SignedString(m.key)
	if err != nil {
		return "", fmt.Errorf("devtoken: %w", err)
	}
	return s, nil
}
