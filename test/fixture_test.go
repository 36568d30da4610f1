package test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// Names of the fixture's issuers.
const (
	issuerPEM  = authztest.DefaultName // ES256, trusted through public_key_file
	issuerJWKS = "https://idp2.test"   // EdDSA, trusted through jwks_file
	audience   = authztest.DefaultAudience
)

// fixture is a temporary directory with everything a configuration names:
// the default policies, the issuers' public keys and (when asked) TLS files.
type fixture struct {
	Dir      string
	Policies string            // Dir/policies, a copy of ../policies
	Issuer   *authztest.Issuer // ES256, public key in Dir/issuer.pem
	Issuer2  *authztest.Issuer // EdDSA, JWKS in Dir/jwks.json
}

// newFixture writes the default policies and the issuers' keys into a new
// temporary directory.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{Dir: t.TempDir()}
	f.Policies = filepath.Join(f.Dir, "policies")
	copyPolicies(t, f.Policies)

	f.Issuer = authztest.NewIssuer(t, "ES256")
	der, err := x509.MarshalPKIXPublicKey(f.Issuer.PublicKey().Public)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(f.Dir, "issuer.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})))

	f.Issuer2 = authztest.NewIssuer(t, "EdDSA")
	f.Issuer2.Name = issuerJWKS
	pub := f.Issuer2.PublicKey().Public.(ed25519.PublicKey)
	writeFile(t, filepath.Join(f.Dir, "jwks.json"), mustJSON(t, map[string]any{"keys": []any{map[string]any{
		"kty": "OKP", "crv": "Ed25519", "use": "sig", "alg": "EdDSA",
		"kid": f.Issuer2.KeyID, "x": base64.RawURLEncoding.EncodeToString(pub),
	}}}))
	return f
}

// tokensYAML is the tokens section trusting the fixture's two issuers.
const tokensYAML = `tokens:
  leeway: 5s
  issuers:
    - issuer: ` + issuerPEM + `
      audiences: [` + audience + `]
      algorithms: [ES256]
      public_key_file: issuer.pem
    - issuer: ` + issuerJWKS + `
      audiences: [` + audience + `]
      algorithms: [EdDSA]
      jwks_file: jwks.json
`

// writeConfig writes verdict.yaml into the fixture's directory (relative
// paths in it resolve there) and returns its path.
func (f *fixture) writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(f.Dir, "verdict.yaml")
	writeFile(t, path, yaml)
	return path
}

// start writes yaml as the configuration and starts verdict with it.
func (f *fixture) start(t *testing.T, yaml string, clientTLS *tls.Config) *process {
	t.Helper()
	return startVerdict(t, startOptions{Args: []string{"--config", f.writeConfig(t, yaml)}, ClientTLS: clientTLS})
}

// copyPolicies copies the default policy set (../policies: data.json and the
// .rego files) to dst.
func copyPolicies(t *testing.T, dst string) {
	t.Helper()
	src := filepath.Join("..", "policies")
	n := 0
	err := fs.WalkDir(os.DirFS(src), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".rego") && path != "data.json" {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(src, path))
		if err != nil {
			return err
		}
		writeFile(t, filepath.Join(dst, path), string(b))
		n++
		return nil
	})
	if err != nil {
		t.Fatalf("copy policies: %v", err)
	}
	if n < 2 {
		t.Fatalf("copy policies: only %d files in %s", n, src)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic writes path the way many editors save: a temporary file in the
// same directory, then a rename over the old one.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := tmp.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
}

// pki is a test CA with the certificates issued from it.
type pki struct {
	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	CAPEM  []byte
	serial int64
}

func newPKI(t *testing.T, name string) *pki {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki{ca: ca, caKey: key, CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), serial: 1}
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// leaf is an issued certificate with its key.
type leaf struct {
	CertPEM, KeyPEM []byte
	TLS             tls.Certificate
}

// issue signs a leaf certificate for cn with the given SANs and usage.
func (p *pki) issue(t *testing.T, cn string, ips []net.IP, uris []string, usage x509.ExtKeyUsage) leaf {
	t.Helper()
	key := newKey(t)
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  ips,
	}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	l := leaf{
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
	}
	if l.TLS, err = tls.X509KeyPair(l.CertPEM, l.KeyPEM); err != nil {
		t.Fatal(err)
	}
	return l
}

// pool returns a pool holding the CA.
func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.ca)
	return pool
}
