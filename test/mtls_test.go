package test

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

const paymentsSPIFFE = "spiffe://verdict.example/ns/shop/sa/payments"

// TestMTLS serves over TLS with client_auth: require. A client presenting a
// certificate with the payments SPIFFE ID, calling inventory:reserve with no
// caller in the body, is allowed: the mTLS peer is the caller. A client
// without a certificate, or with one from another CA, fails the handshake.
func TestMTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ca := authztest.NewCA(t, "verdict e2e CA")
	server := loopbackServer(t, ca, "verdict")
	payments := ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})
	shipping := ca.Issue(t, authztest.LeafOptions{CommonName: "shipping", URIs: []string{"spiffe://verdict.example/ns/shop/sa/shipping"}})
	rogue := authztest.NewCA(t, "rogue CA").Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})
	for name, b := range map[string][]byte{
		"ca.pem": ca.PEM(), "server.pem": server.CertPEM, "server-key.pem": server.KeyPEM,
	} {
		authztest.WriteFile(t, filepath.Join(f.Dir, name), string(b))
	}

	clientTLS := func(certs ...tls.Certificate) *tls.Config {
		return &tls.Config{RootCAs: ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	p := f.start(t, configWithPolicies(actionHeaderYAML+`decision_log: stdout
tls:
  cert_file: server.pem
  key_file: server-key.pem
  client_ca_file: ca.pem
  client_auth: require
`), clientTLS(payments.TLS))
	if !strings.HasPrefix(p.Base, "https://") || !strings.Contains(p.Stderr.String(), "scheme=https") {
		t.Errorf("the listening line does not say https: %s", p.Stderr.String())
	}
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})

	t.Run("peer certificate is the caller", func(t *testing.T) {
		r := p.decide(t, `{"action":"inventory:reserve"}`)
		a := r.JSON(t)
		if r.Status != 200 || !a.Allow || a.Headers["x-verdict-caller"] != paymentsSPIFFE ||
			len(a.Reasons) == 0 || a.Reasons[0] != "service payments may call inventory:reserve" {
			t.Errorf("payments over mTLS: %d %s, want allow by service payments with x-verdict-caller %s", r.Status, r.Body, paymentsSPIFFE)
		}
		r = p.decide(t, mustJSON(t, map[string]any{"token": viewer, "action": "orders:read"}))
		if a := r.JSON(t); !a.Allow || a.Headers["x-verdict-subject"] != "alice" || a.Headers["x-verdict-caller"] != paymentsSPIFFE {
			t.Errorf("user token over mTLS: %s, want alice with caller %s", r.Body, paymentsSPIFFE)
		}
	})

	t.Run("another service's certificate", func(t *testing.T) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS(shipping.TLS)}, Timeout: 10 * time.Second}
		defer c.CloseIdleConnections()
		r := do(t, c, http.MethodPost, p.Base+"/v1/decide", strings.NewReader(`{"action":"inventory:reserve"}`),
			map[string]string{"Content-Type": "application/json"})
		if a := r.JSON(t); r.Status != 200 || a.Allow || len(a.Reasons) == 0 || !strings.Contains(a.Reasons[0], "only payments may call") {
			t.Errorf("shipping over mTLS: %d %s, want a deny", r.Status, r.Body)
		}
	})

	t.Run("forward-auth over mTLS: the peer is the proxy, not the caller", func(t *testing.T) {
		r := do(t, p.Client, http.MethodPost, p.Base+"/v1/check", nil, map[string]string{"X-Verdict-Action": "inventory:reserve"})
		if r.Status != http.StatusUnauthorized || r.Header.Get("X-Verdict-Caller") != "" {
			t.Errorf("check from an mTLS peer: %d %v %s, want 401 without a caller", r.Status, r.Header, r.Body)
		}
	})

	for name, cfg := range map[string]*tls.Config{
		"no client certificate":                 clientTLS(),
		"client certificate from another CA":    clientTLS(rogue.TLS),
		"client certificate without client EKU": clientTLS(server.TLS),
	} {
		t.Run(name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
			defer c.CloseIdleConnections()
			resp, err := c.Post(p.Base+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				t.Fatalf("answered %d %s, want a failed TLS handshake", resp.StatusCode, b)
			}
			if !strings.Contains(err.Error(), "tls") && !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %v, want a TLS handshake failure", err)
			}
			// The handshake itself fails.
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.Addr, cfg)
			if err == nil {
				err = conn.Handshake()
				if err == nil {
					// TLS 1.3: the client's side completes first; the
					// server's refusal arrives on the first read.
					conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, err = conn.Read(make([]byte, 1))
				}
				conn.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "tls") {
				t.Errorf("raw TLS connection: %v, want a TLS alert", err)
			}
		})
	}

	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second}
		resp, err := c.Post("http://"+p.Addr+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 || strings.Contains(string(b), `"allow":true`) {
				t.Errorf("plain HTTP answered %d %s", resp.StatusCode, b)
			}
		}
	})

	// The decision log names the mTLS caller.
	eventually(t, 2*time.Second, func() string {
		if !strings.Contains(p.Stdout.String(), `"caller_id":"`+paymentsSPIFFE+`"`) {
			return "the decision log does not name the mTLS caller"
		}
		return ""
	})
}
