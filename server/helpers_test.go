package server

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// fixture is a server on the embedded default policies, trusting the
// development issuer, with a decision log collected in memory.
type fixture struct {
	srv    *Server
	engine *authz.Engine
	minter *devtoken.Minter
	log    *memLog
	ca     *testCA
}

type fixtureOptions struct {
	noLoad  bool
	trusted []string // trusted proxy prefixes
	mutate  func(*Options)
}

func newFixture(t testing.TB, fo fixtureOptions) *fixture {
	t.Helper()
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Options{Tokens: tokenOptions(m)})
	if err != nil {
		t.Fatal(err)
	}
	if !fo.noLoad {
		snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Load(t.Context(), snap); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{engine: e, minter: m, log: &memLog{}, ca: newTestCA(t, "verdict test ca")}
	opts := Options{Engine: e, DecisionLog: f.log, TrustBundle: f.ca.pool(), ActionHeader: "X-Verdict-Action"}
	for _, p := range fo.trusted {
		opts.TrustedProxies = append(opts.TrustedProxies, netip.MustParsePrefix(p))
	}
	if fo.mutate != nil {
		fo.mutate(&opts)
	}
	if f.srv, err = New(opts); err != nil {
		t.Fatal(err)
	}
	return f
}

func tokenOptions(m *devtoken.Minter) token.Options { return m.TokenOptions() }

// mint returns a development token for sub with roles.
func (f *fixture) mint(t testing.TB, sub string, roles ...string) string {
	t.Helper()
	tok, err := f.minter.Mint(sub, map[string]any{"roles": roles}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// do sends one request through the handler; remote is the peer address
// ("" means 192.0.2.1:1234, an untrusted one).
func (f *fixture) do(t *testing.T, method, target, body string, header http.Header, remote string) *httptest.ResponseRecorder {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r := httptest.NewRequestWithContext(t.Context(), method, target, rd)
	if _, set := header["Content-Type"]; method == http.MethodPost && !set {
		r.Header.Set("Content-Type", "application/json") // as clients send it; TestDecideBadInput tries the others
	}
	for k, vs := range header {
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.RemoteAddr = "192.0.2.1:1234"
	if remote != "" {
		r.RemoteAddr = remote
	}
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return w
}

// decodeAnswer decodes a JSON answer into a generic map.
func decodeAnswer(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, b)
	}
	return m
}

// memLog is a DecisionLog that keeps records in memory.
type memLog struct {
	mu   sync.Mutex
	recs []decisionlog.Record
}

func (l *memLog) Log(r decisionlog.Record) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append(l.recs, r)
	return true
}

func (l *memLog) records() []decisionlog.Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]decisionlog.Record(nil), l.recs...)
}

// testCA is a CA generated when the test runs.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func (ca *testCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// leafOptions describe a leaf certificate.
type leafOptions struct {
	cn       string
	dns      []string
	uris     []string
	usage    []x509.ExtKeyUsage // default client auth
	notAfter time.Time
}

type testLeaf struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (ca *testCA) issue(t testing.TB, o leafOptions) *testLeaf {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: o.cn},
		DNSNames:     o.dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     o.notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.usage,
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(12 * time.Hour)
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, u := range o.uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testLeaf{cert: cert, key: key}
}

func (l *testLeaf) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.cert.Raw})
}

func (l *testLeaf) tlsCertificate(t testing.TB) tls.Certificate {
	t.Helper()
	return tls.Certificate{Certificate: [][]byte{l.cert.Raw}, PrivateKey: l.key, Leaf: l.cert}
}

// escapedPEM is PEM escaped as nginx's $ssl_client_escaped_cert does
// (ngx_escape_uri, NGX_ESCAPE_URI_COMPONENT): everything but unreserved
// characters as %XX, spaces as %20.
func escapedPEM(p []byte) string {
	var b strings.Builder
	for _, c := range p {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// xfcc builds an Envoy XFCC element carrying p as Cert.
func xfcc(p []byte) string {
	return `By=spiffe://verdict.example/envoy;Hash=abc123;Cert="` + url.PathEscape(string(p)) +
		`";Subject="CN=x,O=y";URI=spiffe://verdict.example/ns/shop/sa/payments`
}

func jsonBody(t testing.TB, v any) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// policySnapshot is an in-memory snapshot of one module.
func policySnapshot(t testing.TB, rego string) *bundles.Snapshot {
	t.Helper()
	s := &bundles.Snapshot{Origin: "test", Data: map[string]any{},
		Modules: []bundles.Module{{Path: "policy.rego", Raw: []byte(rego)}}}
	s.Revision = bundles.ContentHash(s)
	return s
}
