package test

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// escapeComponent percent-encodes everything but unreserved characters, as
// nginx's $ssl_client_escaped_cert and Envoy's XFCC Cert do.
func escapeComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// TestForwardedCallers checks caller certificates asserted by a proxy: in
// the /v1/decide body (caller.certificate), in X-SSL-Client-Cert (nginx) and
// in X-Forwarded-Client-Cert (Envoy). They are believed only from a trusted
// proxy and only when they chain to the trust bundle; otherwise the request
// is rejected with a "caller:" reason (200 deny on decide, 403 on check).
func TestForwardedCallers(t *testing.T) {
	t.Parallel()
	ca := newPKI(t, "callers CA")
	payments := ca.issue(t, "payments", nil, []string{paymentsSPIFFE}, x509.ExtKeyUsageClientAuth)
	rogue := newPKI(t, "rogue CA").issue(t, "payments", nil, []string{paymentsSPIFFE}, x509.ExtKeyUsageClientAuth)

	start := func(t *testing.T, trusted string) *process {
		f := newFixture(t)
		writeFile(t, filepath.Join(f.Dir, "bundle.pem"), string(ca.CAPEM))
		return f.start(t, configWithPolicies(actionHeaderYAML+fmt.Sprintf(`decision_log: off
callers:
  trusted_proxies: [%s]
  trust_bundle_file: bundle.pem
  xfcc_header: X-Forwarded-Client-Cert
  escaped_cert_header: X-SSL-Client-Cert
`, trusted)), nil)
	}
	decideAs := func(t *testing.T, p *process, certPEM []byte) answer {
		t.Helper()
		r := p.decide(t, mustJSON(t, map[string]any{"action": "inventory:reserve", "caller": map[string]any{"certificate": string(certPEM)}}))
		if r.Status != http.StatusOK {
			t.Fatalf("decide: %d %s, want 200", r.Status, r.Body)
		}
		return r.JSON(t)
	}
	check := func(t *testing.T, p *process, header, value string) response {
		t.Helper()
		return do(t, p.Client, http.MethodGet, p.Base+"/v1/check", nil, map[string]string{
			"X-Verdict-Action": "inventory:reserve", header: value})
	}
	xfcc := func(certPEM []byte) string {
		return `By=spiffe://verdict.example/ns/shop/sa/proxy;Hash=abc;Cert="` + escapeComponent(string(certPEM)) + `";URI=` + paymentsSPIFFE
	}

	t.Run("from a trusted proxy", func(t *testing.T) {
		t.Parallel()
		p := start(t, "127.0.0.1/32")
		if a := decideAs(t, p, payments.CertPEM); !a.Allow || a.Headers["x-verdict-caller"] != paymentsSPIFFE {
			t.Errorf("body certificate from a trusted proxy: %+v, want allow as %s", a, paymentsSPIFFE)
		}
		if a := decideAs(t, p, rogue.CertPEM); a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "caller:") {
			t.Errorf("body certificate from another CA: %+v, want a caller: deny", a)
		}
		for _, tc := range []struct {
			name, header, value string
			want                int
		}{
			{"nginx escaped PEM", "X-SSL-Client-Cert", escapeComponent(string(payments.CertPEM)), 200},
			{"Envoy XFCC", "X-Forwarded-Client-Cert", xfcc(payments.CertPEM), 200},
			{"nginx escaped PEM, another CA", "X-SSL-Client-Cert", escapeComponent(string(rogue.CertPEM)), 403},
			{"Envoy XFCC, another CA", "X-Forwarded-Client-Cert", xfcc(rogue.CertPEM), 403},
			{"garbage", "X-SSL-Client-Cert", "not a certificate", 403},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := check(t, p, tc.header, tc.value)
				if r.Status != tc.want {
					t.Fatalf("status %d, want %d: %s", r.Status, tc.want, r.Body)
				}
				a := r.JSON(t)
				if tc.want == 200 && r.Header.Get("X-Verdict-Caller") != paymentsSPIFFE {
					t.Errorf("X-Verdict-Caller %q, want %s", r.Header.Get("X-Verdict-Caller"), paymentsSPIFFE)
				}
				if tc.want == 403 && (a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "caller:")) {
					t.Errorf("answer %s, want a caller: deny", r.Body)
				}
			})
		}
	})

	t.Run("from an untrusted peer", func(t *testing.T) {
		t.Parallel()
		p := start(t, "192.0.2.1") // not the test's address
		if a := decideAs(t, p, payments.CertPEM); a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "caller:") {
			t.Errorf("body certificate from an untrusted peer: %+v, want a caller: deny", a)
		}
		for _, h := range []struct{ header, value string }{
			{"X-SSL-Client-Cert", escapeComponent(string(payments.CertPEM))},
			{"X-Forwarded-Client-Cert", xfcc(payments.CertPEM)},
		} {
			r := check(t, p, h.header, h.value)
			if a := r.JSON(t); r.Status != http.StatusForbidden || a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "caller:") {
				t.Errorf("%s from an untrusted peer: %d %s, want 403 with a caller: reason", h.header, r.Status, r.Body)
			}
		}
	})
}
