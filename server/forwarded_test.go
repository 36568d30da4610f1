package server

import (
	"crypto/x509"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestForwardedCertCheck(t *testing.T) {
	f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8", "::1/128"}, mutate: func(o *Options) {
		o.XFCCHeader, o.EscapedCertHeader = "X-Forwarded-Client-Cert", "X-SSL-Client-Cert"
	}})
	payments := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	orders := f.ca.Issue(t, authztest.LeafOptions{CommonName: "orders", DNSNames: []string{"orders.shop.svc"}})
	foreign := authztest.NewCA(t, "other ca").Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	expired := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments", NotAfter: time.Now().Add(-time.Minute)})

	// A client certificate from a CA Envoy accepts but Verdict does not
	// trust, whose URI SAN carries another element holding payments'
	// (public) certificate: Envoy writes URI values unquoted.
	injecting := authztest.NewCA(t, "partner ca").Issue(t, authztest.LeafOptions{CommonName: "mallory",
		URIs: []string{"spiffe://partner.example/mallory,Cert=" + authztest.EscapePEM(payments.CertPEM)}})
	envoyElement := func(l authztest.Leaf) string { // as Envoy writes it with cert, subject, uri and dns
		e := `By=spiffe://verdict.example/envoy;Hash=abc123;Cert="` + authztest.EscapePEM(l.CertPEM) +
			`";Subject="CN=` + l.Cert.Subject.CommonName + `"`
		for _, u := range l.Cert.URIs {
			e += ";URI=" + u.String()
		}
		for _, d := range l.Cert.DNSNames {
			e += ";DNS=" + d
		}
		return e
	}
	certOnly := func(l authztest.Leaf) string { // as Envoy writes it with cert and subject only
		return `Hash=abc123;Cert="` + authztest.EscapePEM(l.CertPEM) + `";Subject="CN=` + l.Cert.Subject.CommonName + `"`
	}
	const ambiguous = "caller: forwarded certificate header ambiguous: several XFCC elements, with URI or DNS pairs " +
		"(a client certificate's SAN can add an element): have the proxy send Cert only, or overwrite the header"

	reserve := http.Header{"X-Verdict-Action": {"inventory:reserve"}}
	with := func(k, v string) http.Header {
		h := reserve.Clone()
		h.Add(k, v)
		return h
	}
	tests := []struct {
		name       string
		header     http.Header
		remote     string
		want       int
		wantReason string
	}{
		{name: "xfcc from trusted proxy", header: with("X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM)),
			remote: "10.0.0.5:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "xfcc last element wins", header: with("X-Forwarded-Client-Cert", certOnly(orders)+","+certOnly(payments)),
			remote: "10.0.0.5:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "xfcc earlier element ignored", header: with("X-Forwarded-Client-Cert", certOnly(payments)+","+certOnly(orders)),
			remote: "10.0.0.5:443", want: 401, wantReason: "caller orders.shop.svc is not a known service"},
		{name: "xfcc one element with URI, as Envoy writes it", header: with("X-Forwarded-Client-Cert", envoyElement(payments)),
			remote: "10.0.0.5:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "xfcc element injected through a URI SAN", header: with("X-Forwarded-Client-Cert", envoyElement(injecting)),
			remote: "10.0.0.5:443", want: 403, wantReason: ambiguous},
		{name: "xfcc element injected through a URI SAN, appended", header: with("X-Forwarded-Client-Cert", certOnly(orders)+","+envoyElement(injecting)),
			remote: "10.0.0.5:443", want: 403, wantReason: ambiguous},
		{name: "xfcc several elements, one with URI", header: with("X-Forwarded-Client-Cert", envoyElement(orders)+","+certOnly(payments)),
			remote: "10.0.0.5:443", want: 403, wantReason: ambiguous},
		{name: "escaped PEM from trusted proxy (IPv6)", header: with("X-Ssl-Client-Cert", authztest.EscapePEM(payments.CertPEM)),
			remote: "[::1]:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "other service is denied by policy", header: with("X-Ssl-Client-Cert", authztest.EscapePEM(orders.CertPEM)),
			remote: "10.0.0.5:443", want: 401, wantReason: "caller orders.shop.svc is not a known service"},
		{name: "xfcc from untrusted peer", header: with("X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM)),
			remote: "192.0.2.1:443", want: 403, wantReason: "caller: forwarded certificate header from an untrusted peer"},
		{name: "escaped PEM from untrusted peer", header: with("X-Ssl-Client-Cert", authztest.EscapePEM(payments.CertPEM)),
			remote: "11.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate header from an untrusted peer"},
		{name: "wrong CA", header: with("X-Ssl-Client-Cert", authztest.EscapePEM(foreign.CertPEM)),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate does not chain to the trust bundle for client authentication"},
		{name: "expired", header: with("X-Ssl-Client-Cert", authztest.EscapePEM(expired.CertPEM)),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate is expired or not yet valid"},
		{name: "malformed", header: with("X-Ssl-Client-Cert", "not-a-cert"),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: malformed forwarded certificate"},
		{name: "both headers", header: func() http.Header {
			h := with("X-Ssl-Client-Cert", authztest.EscapePEM(payments.CertPEM))
			h.Add("X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM))
			return h
		}(), remote: "10.0.0.5:443", want: 403, wantReason: "caller: more than one forwarded certificate header"},
		{name: "no forwarded cert: caller not authenticated", header: reserve,
			remote: "10.0.0.5:443", want: 401, wantReason: "the caller is not authenticated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, http.MethodGet, "/v1/check", "", tc.header, tc.remote)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; %s", w.Code, tc.want, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			reasons, _ := got["reasons"].([]any)
			found := false
			for _, r := range reasons {
				s, _ := r.(string)
				found = found || strings.HasSuffix(s, tc.wantReason)
			}
			if !found {
				t.Errorf("reasons = %v, want one ending %q", reasons, tc.wantReason)
			}
		})
	}
	// The cache answers a repeated header the same way.
	h := with("X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM))
	for range 3 {
		if w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:443"); w.Code != 200 {
			t.Fatalf("repeat: %d", w.Code)
		}
	}
	if w := f.do(t, http.MethodGet, "/v1/check", "", h, "192.0.2.1:443"); w.Code != 403 {
		t.Fatalf("cached certificate from untrusted peer: %d, want 403", w.Code)
	}
}

func TestForwardedHeaderNamesConfigurable(t *testing.T) {
	f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}, mutate: func(o *Options) {
		o.EscapedCertHeader = "X-Client-Cert-Pem"
	}})
	payments := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments"})
	h := http.Header{"X-Verdict-Action": {"inventory:reserve"}, "X-Client-Cert-Pem": {authztest.EscapePEM(payments.CertPEM)}}
	if w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:1"); w.Code != 200 {
		t.Fatalf("status = %d; %s", w.Code, w.Body)
	}
	// The default name is no longer read.
	h = http.Header{"X-Verdict-Action": {"inventory:reserve"}, "X-Ssl-Client-Cert": {authztest.EscapePEM(payments.CertPEM)}}
	if w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:1"); w.Code != 401 {
		t.Fatalf("status = %d, want 401 (no caller)", w.Code)
	}
}

// TestForwardedCertHeadersAreOptIn: a forwarded certificate is read only
// from a header the configuration names. A deployment whose proxy sets
// only X-SSL-Client-Cert (and sends it empty for a client without a
// certificate) relays the client's own X-Forwarded-Client-Cert: since
// certificates are public, believing it would let any client be any
// service.
func TestForwardedCertHeadersAreOptIn(t *testing.T) {
	ca := authztest.NewCA(t, "opt-in ca")
	payments := ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	tests := []struct {
		name       string
		xfcc, esc  string // configured header names
		header     http.Header
		want       int
		wantReason string
	}{
		{name: "nothing configured: XFCC ignored", header: http.Header{"X-Forwarded-Client-Cert": {authztest.XFCC(payments.CertPEM)}},
			want: 401, wantReason: "the caller is not authenticated"},
		{name: "nothing configured: escaped PEM ignored", header: http.Header{"X-Ssl-Client-Cert": {authztest.EscapePEM(payments.CertPEM)}},
			want: 401, wantReason: "the caller is not authenticated"},
		{name: "nginx deployment: client's XFCC ignored beside an empty escaped header", esc: "X-SSL-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {""}, "X-Forwarded-Client-Cert": {authztest.XFCC(payments.CertPEM)}},
			want:   401, wantReason: "the caller is not authenticated"},
		{name: "nginx deployment: the configured header is read", esc: "X-SSL-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {authztest.EscapePEM(payments.CertPEM)}},
			want:   200, wantReason: "service payments may call inventory:reserve"},
		{name: "envoy deployment: escaped PEM ignored", xfcc: "X-Forwarded-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {authztest.EscapePEM(payments.CertPEM)}},
			want:   401, wantReason: "the caller is not authenticated"},
		{name: "a custom header name", xfcc: "X-Client-Cert-Details",
			header: http.Header{"X-Client-Cert-Details": {authztest.XFCC(payments.CertPEM)}},
			want:   200, wantReason: "service payments may call inventory:reserve"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}, mutate: func(o *Options) {
				o.XFCCHeader, o.EscapedCertHeader, o.TrustBundle = tc.xfcc, tc.esc, fixedPool(ca.Pool())
			}})
			h := tc.header.Clone()
			h.Set("X-Verdict-Action", "inventory:reserve")
			w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:443")
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; %s", w.Code, tc.want, w.Body)
			}
			reasons, _ := decodeAnswer(t, w.Body.Bytes())["reasons"].([]any)
			if len(reasons) != 1 || !strings.HasSuffix(reasons[0].(string), tc.wantReason) {
				t.Errorf("reasons = %v, want one ending %q", reasons, tc.wantReason)
			}
		})
	}
}

// TestForwardedCertTrustBundleReplaced: a forwarded certificate verified
// (and cached) under one trust bundle is verified again when the bundle is
// replaced: a CA rotated out of the bundle stops its certificates at once,
// cache or not, and one rotated in is trusted at once.
func TestForwardedCertTrustBundleReplaced(t *testing.T) {
	oldCA, newCA := authztest.NewCA(t, "old ca"), authztest.NewCA(t, "new ca")
	var bundle atomic.Pointer[x509.CertPool]
	bundle.Store(oldCA.Pool())
	f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}, mutate: func(o *Options) {
		o.XFCCHeader, o.TrustBundle = "X-Forwarded-Client-Cert", bundle.Load
	}})
	leaf := func(ca *authztest.CA) http.Header {
		c := ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
		return http.Header{"X-Verdict-Action": {"inventory:reserve"}, "X-Forwarded-Client-Cert": {authztest.XFCC(c.CertPEM)}}
	}
	oldLeaf, newLeaf := leaf(oldCA), leaf(newCA)
	status := func(h http.Header) int {
		return f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:443").Code
	}
	for range 2 { // the second answer comes from the cache
		if got := status(oldLeaf); got != 200 {
			t.Fatalf("old CA's certificate under the old bundle: %d, want 200", got)
		}
	}
	if got := status(newLeaf); got != 403 {
		t.Fatalf("new CA's certificate under the old bundle: %d, want 403", got)
	}
	bundle.Store(newCA.Pool())
	if got := status(oldLeaf); got != 403 {
		t.Fatalf("old CA's certificate (cached) under the new bundle: %d, want 403", got)
	}
	if got := status(newLeaf); got != 200 {
		t.Fatalf("new CA's certificate under the new bundle: %d, want 200", got)
	}
	bundle.Store(nil)
	if got := status(newLeaf); got != 403 {
		t.Fatalf("no bundle: %d, want 403", got)
	}
}
