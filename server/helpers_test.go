package server

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// fixture is a server on the embedded default policies, trusting the
// development issuer, with a decision log collected in memory.
type fixture struct {
	srv    *Server
	engine *authz.Engine
	minter *devtoken.Minter
	log    *memLog
	ca     *authztest.CA
}

type fixtureOptions struct {
	noLoad    bool
	keepInput bool                 // authz.Options.KeepInput
	trusted   []string             // trusted proxy prefixes
	tracer    trace.TracerProvider // the engine's and the server's
	mutate    func(*Options)
}

func newFixture(t testing.TB, fo fixtureOptions) *fixture {
	t.Helper()
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Options{Tokens: tokenOptions(m), KeepInput: fo.keepInput, TracerProvider: fo.tracer})
	if err != nil {
		t.Fatal(err)
	}
	if !fo.noLoad {
		if err := e.Load(t.Context(), authztest.DefaultPolicies(t)); err != nil {
			t.Fatal(err)
		}
	}
	f := &fixture{engine: e, minter: m, log: &memLog{}, ca: authztest.NewCA(t, "verdict test ca")}
	opts := Options{Engine: e, Addr: "127.0.0.1:0", DecisionLog: f.log, TrustBundle: fixedPool(f.ca.Pool()), ActionHeader: "X-Verdict-Action",
		TracerProvider: fo.tracer}
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

// benchFixture is newFixture without a decision log: the benchmarks
// measure the front and the engine.
func benchFixture(b *testing.B, fo fixtureOptions) *fixture {
	b.Helper()
	f := newFixture(b, fo)
	f.log, f.srv.dlog = nil, nil
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

func jsonBody(t testing.TB, v any) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.NewEncoder(&b).Encode(v); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// fixedPool is an Options.TrustBundle that never changes.
func fixedPool(p *x509.CertPool) func() *x509.CertPool { return func() *x509.CertPool { return p } }
