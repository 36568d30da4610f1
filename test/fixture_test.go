package test

import (
	"crypto/tls"
	"crypto/x509"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
	authztest.WriteFile(t, filepath.Join(f.Dir, "issuer.pem"), string(f.Issuer.PublicKeyPEM(t)))

	f.Issuer2 = authztest.NewIssuer(t, "EdDSA")
	f.Issuer2.Name = issuerJWKS
	authztest.WriteFile(t, filepath.Join(f.Dir, "jwks.json"), string(authztest.JWKS(t, f.Issuer2)))
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

// configWithPolicies is a plain-HTTP configuration on a free port with the
// fixture's copy of the default policies and both issuers.
func configWithPolicies(extra string) string {
	return `addr: 127.0.0.1:0
policy:
  dir: policies
` + tokensYAML + extra
}

// actionHeaderYAML opts in to the X-Verdict-Action header on /v1/check
// (proxies relay client headers, so it is off by default).
const actionHeaderYAML = "forward_auth:\n  action_header: X-Verdict-Action\n"

// writeConfig writes verdict.yaml into the fixture's directory (relative
// paths in it resolve there) and returns its path.
func (f *fixture) writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(f.Dir, "verdict.yaml")
	authztest.WriteFile(t, path, yaml)
	return path
}

// start writes yaml as the configuration and starts verdict with it.
func (f *fixture) start(t *testing.T, yaml string, clientTLS *tls.Config) *process {
	t.Helper()
	return startVerdict(t, startOptions{Args: []string{"--config", f.writeConfig(t, yaml)}, ClientTLS: clientTLS})
}

// startWithPolicies starts verdict on a new fixture with its copy of the
// default policies, both issuers and extra configuration (see
// configWithPolicies), over plain HTTP.
func startWithPolicies(t *testing.T, extra string) (*fixture, *process) {
	t.Helper()
	f := newFixture(t)
	return f, f.start(t, configWithPolicies(extra), nil)
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
		authztest.WriteFile(t, filepath.Join(dst, path), string(b))
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

// loopbackServer issues a server certificate for 127.0.0.1 from ca.
func loopbackServer(t *testing.T, ca *authztest.CA, cn string) authztest.Leaf {
	t.Helper()
	return ca.Issue(t, authztest.LeafOptions{CommonName: cn, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
}
