package server

import (
	"bytes"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestForwardedCertCheck(t *testing.T) {
	f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8", "::1/128"}, mutate: func(o *Options) {
		o.XFCCHeader, o.EscapedCertHeader = "X-Forwarded-Client-Cert", "X-SSL-Client-Cert"
	}})
	payments := f.ca.issue(t, leafOptions{cn: "payments", uris: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	orders := f.ca.issue(t, leafOptions{cn: "orders", dns: []string{"orders.shop.svc"}})
	foreign := newTestCA(t, "other ca").issue(t, leafOptions{cn: "payments", uris: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	expired := f.ca.issue(t, leafOptions{cn: "payments", notAfter: time.Now().Add(-time.Minute)})

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
		{name: "xfcc from trusted proxy", header: with("X-Forwarded-Client-Cert", xfcc(payments.pem())),
			remote: "10.0.0.5:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "xfcc last element wins", header: with("X-Forwarded-Client-Cert", xfcc(orders.pem())+","+xfcc(payments.pem())),
			remote: "10.0.0.5:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "xfcc earlier element ignored", header: with("X-Forwarded-Client-Cert", xfcc(payments.pem())+","+xfcc(orders.pem())),
			remote: "10.0.0.5:443", want: 401, wantReason: "caller orders.shop.svc is not a known service"},
		{name: "escaped PEM from trusted proxy (IPv6)", header: with("X-Ssl-Client-Cert", escapedPEM(payments.pem())),
			remote: "[::1]:443", want: 200, wantReason: "service payments may call inventory:reserve"},
		{name: "other service is denied by policy", header: with("X-Ssl-Client-Cert", escapedPEM(orders.pem())),
			remote: "10.0.0.5:443", want: 401, wantReason: "caller orders.shop.svc is not a known service"},
		{name: "xfcc from untrusted peer", header: with("X-Forwarded-Client-Cert", xfcc(payments.pem())),
			remote: "192.0.2.1:443", want: 403, wantReason: "caller: forwarded certificate header from an untrusted peer"},
		{name: "escaped PEM from untrusted peer", header: with("X-Ssl-Client-Cert", escapedPEM(payments.pem())),
			remote: "11.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate header from an untrusted peer"},
		{name: "wrong CA", header: with("X-Ssl-Client-Cert", escapedPEM(foreign.pem())),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate does not chain to the trust bundle for client authentication"},
		{name: "expired", header: with("X-Ssl-Client-Cert", escapedPEM(expired.pem())),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: forwarded certificate is expired or not yet valid"},
		{name: "malformed", header: with("X-Ssl-Client-Cert", "not-a-cert"),
			remote: "10.0.0.5:443", want: 403, wantReason: "caller: malformed forwarded certificate"},
		{name: "both headers", header: func() http.Header {
			h := with("X-Ssl-Client-Cert", escapedPEM(payments.pem()))
			h.Add("X-Forwarded-Client-Cert", xfcc(payments.pem()))
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
	h := with("X-Forwarded-Client-Cert", xfcc(payments.pem()))
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
	payments := f.ca.issue(t, leafOptions{cn: "payments"})
	h := http.Header{"X-Verdict-Action": {"inventory:reserve"}, "X-Client-Cert-Pem": {escapedPEM(payments.pem())}}
	if w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:1"); w.Code != 200 {
		t.Fatalf("status = %d; %s", w.Code, w.Body)
	}
	// The default name is no longer read.
	h = http.Header{"X-Verdict-Action": {"inventory:reserve"}, "X-Ssl-Client-Cert": {escapedPEM(payments.pem())}}
	if w := f.do(t, http.MethodGet, "/v1/check", "", h, "10.0.0.5:1"); w.Code != 401 {
		t.Fatalf("status = %d, want 401 (no caller)", w.Code)
	}
}

func TestParseXFCC(t *testing.T) {
	ca := newTestCA(t, "ca")
	leaf := ca.issue(t, leafOptions{cn: "svc"})
	p := leaf.pem()
	enc := url.PathEscape(string(p))
	tests := []struct {
		name    string
		value   string
		want    []byte
		wantErr bool
	}{
		{name: "quoted cert", value: `Hash=1;Cert="` + enc + `"`, want: p},
		{name: "unquoted cert", value: `Cert=` + enc + `;Hash=1`, want: p},
		{name: "lowercase key", value: `cert="` + enc + `"`, want: p},
		{name: "quoted subject with separators", value: `Subject="CN=a,O=b;c=\"d\"";Cert="` + enc + `"`, want: p},
		{name: "last element", value: `Cert=AAAA,Hash=2;Cert="` + enc + `"`, want: p},
		{name: "chain appended", value: `Cert="` + enc + `";Chain="` + url.PathEscape(string(ca.pem())) + `"`,
			want: append(append(append([]byte{}, p...), '\n'), ca.pem()...)},
		{name: "no cert", value: `Hash=1;Subject="CN=x"`, wantErr: true},
		{name: "empty last element", value: `Cert="` + enc + `",`, wantErr: true},
		{name: "unterminated quote", value: `Cert="` + enc, wantErr: true},
		{name: "pair without equals", value: `Cert`, wantErr: true},
		{name: "two certs", value: `Cert="` + enc + `";Cert="` + enc + `"`, wantErr: true},
		{name: "not PEM", value: `Cert="hello"`, wantErr: true},
		{name: "bad escape", value: `Cert="-----BEGIN %zz"`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseXFCC(tc.value)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrForwardedCert) {
					t.Errorf("err %v does not wrap ErrForwardedCert", err)
				}
				return
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if _, _, err := parseChain(got); err != nil {
				t.Errorf("parseChain: %v", err)
			}
		})
	}
}

func TestParseEscapedPEM(t *testing.T) {
	leaf := newTestCA(t, "ca").issue(t, leafOptions{cn: "svc"})
	p := leaf.pem()
	for name, v := range map[string]string{
		"form encoded": url.QueryEscape(string(p)), // spaces as '+', '+' as %2B
		"path escaped": url.PathEscape(string(p)),
		"nginx style":  strings.NewReplacer("\n", "%0A", " ", "%20", "+", "%2B", "/", "%2F", "=", "%3D").Replace(string(p)),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseEscapedPEM(v)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := parseChain(got)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Equal(leaf.cert) {
				t.Error("different certificate")
			}
		})
	}
}

func TestParseChainLimits(t *testing.T) {
	ca := newTestCA(t, "ca")
	one := ca.pem()
	if _, _, err := parseChain(bytes.Repeat(one, maxChainCerts+1)); err == nil {
		t.Error("too many certificates accepted")
	}
	notACert := "-----BEGIN " + "PRIVATE KEY-----\nAAAA\n-----END " + "PRIVATE KEY-----\n" // no real key: a block of the wrong type
	if _, _, err := parseChain([]byte(notACert)); err == nil {
		t.Error("private key block accepted")
	}
	leaf, inter, err := parseChain(append(ca.issue(t, leafOptions{cn: "x"}).pem(), one...))
	if err != nil || leaf == nil || len(inter) != 1 {
		t.Errorf("leaf %v, inter %d, err %v", leaf != nil, len(inter), err)
	}
}

// TestForwardedCertHeadersAreOptIn: a forwarded certificate is read only
// from a header the configuration names. A deployment whose proxy sets
// only X-SSL-Client-Cert (and sends it empty for a client without a
// certificate) relays the client's own X-Forwarded-Client-Cert: since
// certificates are public, believing it would let any client be any
// service.
func TestForwardedCertHeadersAreOptIn(t *testing.T) {
	ca := newTestCA(t, "opt-in ca")
	payments := ca.issue(t, leafOptions{cn: "payments", uris: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	tests := []struct {
		name       string
		xfcc, esc  string // configured header names
		header     http.Header
		want       int
		wantReason string
	}{
		{name: "nothing configured: XFCC ignored", header: http.Header{"X-Forwarded-Client-Cert": {xfcc(payments.pem())}},
			want: 401, wantReason: "the caller is not authenticated"},
		{name: "nothing configured: escaped PEM ignored", header: http.Header{"X-Ssl-Client-Cert": {escapedPEM(payments.pem())}},
			want: 401, wantReason: "the caller is not authenticated"},
		{name: "nginx deployment: client's XFCC ignored beside an empty escaped header", esc: "X-SSL-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {""}, "X-Forwarded-Client-Cert": {xfcc(payments.pem())}},
			want:   401, wantReason: "the caller is not authenticated"},
		{name: "nginx deployment: the configured header is read", esc: "X-SSL-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {escapedPEM(payments.pem())}},
			want:   200, wantReason: "service payments may call inventory:reserve"},
		{name: "envoy deployment: escaped PEM ignored", xfcc: "X-Forwarded-Client-Cert",
			header: http.Header{"X-Ssl-Client-Cert": {escapedPEM(payments.pem())}},
			want:   401, wantReason: "the caller is not authenticated"},
		{name: "a custom header name", xfcc: "X-Client-Cert-Details",
			header: http.Header{"X-Client-Cert-Details": {xfcc(payments.pem())}},
			want:   200, wantReason: "service payments may call inventory:reserve"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}, mutate: func(o *Options) {
				o.XFCCHeader, o.EscapedCertHeader, o.TrustBundle = tc.xfcc, tc.esc, ca.pool()
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
