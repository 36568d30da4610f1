package client_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/client"
	"github.com/verdict-pdp/verdict/server"
)

// adminPolicy allows only the caller spiffe://example.org/admin, and says
// how the caller was known.
const adminPolicy = `package authz
allow if input.caller.id == "spiffe://example.org/admin"
reasons contains input.caller.method
`

// mtlsVerdict is a real Verdict front on adminPolicy over TLS, verifying
// client certificates of ca when given, and a client of it that presents
// the certificate of spiffe://example.org/admin: the protected service's
// own identity. trusted are its callers.trusted_proxies.
func mtlsVerdict(t *testing.T, ca *authztest.CA, trusted ...string) (*authz.Engine, *client.Client) {
	t.Helper()
	engine, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := engine.Load(t.Context(), authztest.Policy(t, "r1", adminPolicy)); err != nil {
		t.Fatal(err)
	}
	opts := server.Options{Engine: engine, TrustBundle: func() *x509.CertPool { return ca.Pool() }}
	for _, p := range trusted {
		opts.TrustedProxies = append(opts.TrustedProxies, netip.MustParsePrefix(p))
	}
	srv, err := server.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	pdp := httptest.NewUnstartedServer(srv.Handler())
	pdp.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
	pdp.StartTLS()
	t.Cleanup(pdp.Close)
	service := ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://example.org/admin"}})
	tr := pdp.Client().Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{service.TLS}
	return engine, newClient(t, client.Options{URL: pdp.URL, HTTPClient: &http.Client{Transport: tr}, Retries: -1})
}

// TestMiddlewareCallerIsNotTheService: the client's middleware asked about
// an end user's request with no caller, so the server took its mTLS peer —
// the protected service itself — for the caller, and a policy allowing
// that service let every end user through. The engine's middleware takes
// the request's own client certificate. Both now deny an end user without
// one.
func TestMiddlewareCallerIsNotTheService(t *testing.T) {
	ca := authztest.NewCA(t, "mesh CA")
	engine, c := mtlsVerdict(t, ca)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "admin console") })
	for _, tc := range []struct {
		name string
		mw   func(http.Handler) http.Handler
	}{
		{"engine", engine.Middleware(authz.MiddlewareOptions{})},
		{"client", c.Middleware(client.MiddlewareOptions{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := httptest.NewServer(tc.mw(handler))
			defer s.Close()
			resp, err := http.Get(s.URL + "/admin/users/delete-all")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Errorf("an anonymous end user was allowed (decided as the service's own mTLS identity)")
			}
		})
	}
	// Asked directly, the zero Caller is still the service itself, and
	// Anonymous is nobody.
	for _, tc := range []struct {
		caller    client.Caller
		wantAllow bool
	}{
		{client.Caller{}, true},
		{client.Caller{Anonymous: true}, false},
	} {
		d, err := c.Decide(t.Context(), client.Request{Caller: tc.caller, Action: client.Action{Name: "x"}})
		if err != nil || d.Allow != tc.wantAllow {
			t.Errorf("%+v: %+v, %v; want allow %v", tc.caller, d, err, tc.wantAllow)
		}
	}
	d, err := c.Decide(t.Context(), client.Request{Caller: client.Caller{Anonymous: true, Token: "t"}, Action: client.Action{Name: "x"}})
	if d.Allow || !errors.Is(err, client.ErrInvalidRequest) {
		t.Errorf("anonymous with a token: %+v, %v; want ErrInvalidRequest", d, err)
	}
}

// TestMiddlewareMTLSEndUser: an end user's verified client certificate is
// sent as the caller, believed when the protected service is one of the
// server's trusted proxies, and refused with a caller: reason otherwise (a
// deny, 403: a bearer token would not help, and WWW-Authenticate would
// say it might).
func TestMiddlewareMTLSEndUser(t *testing.T) {
	ca := authztest.NewCA(t, "mesh CA")
	admin := ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://example.org/admin"}})
	other := ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://example.org/other"}})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "admin console") })
	for _, tc := range []struct {
		name    string
		trusted []string
		user    authztest.Leaf
		want    int
		reason  string
	}{
		{name: "trusted service, admin", trusted: []string{"127.0.0.0/8", "::1/128"}, user: admin, want: 200},
		{name: "trusted service, other", trusted: []string{"127.0.0.0/8", "::1/128"}, user: other, want: 401, reason: "forwarded_cert"},
		{name: "untrusted service, admin", user: admin, want: 403,
			reason: "caller: a certificate in the request body is accepted only from a trusted proxy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, c := mtlsVerdict(t, ca, tc.trusted...)
			s := httptest.NewUnstartedServer(c.Middleware(client.MiddlewareOptions{})(handler))
			s.TLS = &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven, ClientCAs: ca.Pool()}
			s.StartTLS()
			defer s.Close()
			tr := s.Client().Transport.(*http.Transport).Clone()
			tr.TLSClientConfig.Certificates = []tls.Certificate{tc.user.TLS}
			resp, err := (&http.Client{Transport: tr}).Get(s.URL + "/admin")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.want, body)
			}
			if tc.reason != "" && !strings.Contains(string(body), tc.reason) {
				t.Errorf("answer %s; want the reason %q", body, tc.reason)
			}
		})
	}
}
