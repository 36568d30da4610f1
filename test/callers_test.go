package test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestForwardedCallers checks caller certificates asserted by a proxy: in
// the /v1/decide body (caller.certificate), in X-SSL-Client-Cert (nginx) and
// in X-Forwarded-Client-Cert (Envoy). They are believed only from a trusted
// proxy and only when they chain to the trust bundle; otherwise the request
// is rejected with a "caller:" reason (200 deny on decide, 403 on check).
func TestForwardedCallers(t *testing.T) {
	t.Parallel()
	ca := authztest.NewCA(t, "callers CA")
	payments := ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})
	rogue := authztest.NewCA(t, "rogue CA").Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})

	start := func(t *testing.T, trusted string) *process {
		f := newFixture(t)
		authztest.WriteFile(t, filepath.Join(f.Dir, "bundle.pem"), string(ca.PEM()))
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
		return p.decideOK(t, mustJSON(t, map[string]any{"action": "inventory:reserve", "caller": map[string]any{"certificate": string(certPEM)}}))
	}
	check := func(t *testing.T, p *process, header, value string) response {
		t.Helper()
		return do(t, p.Client, http.MethodGet, p.Base+"/v1/check", nil, map[string]string{
			"X-Verdict-Action": "inventory:reserve", header: value})
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
			{"nginx escaped PEM", "X-SSL-Client-Cert", authztest.EscapePEM(payments.CertPEM), 200},
			{"Envoy XFCC", "X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM), 200},
			{"nginx escaped PEM, another CA", "X-SSL-Client-Cert", authztest.EscapePEM(rogue.CertPEM), 403},
			{"Envoy XFCC, another CA", "X-Forwarded-Client-Cert", authztest.XFCC(rogue.CertPEM), 403},
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
			{"X-SSL-Client-Cert", authztest.EscapePEM(payments.CertPEM)},
			{"X-Forwarded-Client-Cert", authztest.XFCC(payments.CertPEM)},
		} {
			r := check(t, p, h.header, h.value)
			if a := r.JSON(t); r.Status != http.StatusForbidden || a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "caller:") {
				t.Errorf("%s from an untrusted peer: %d %s, want 403 with a caller: reason", h.header, r.Status, r.Body)
			}
		}
	})
}
