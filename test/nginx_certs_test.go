package test

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// nginxMTLSConf is an nginx that terminates mTLS (client certificates
// optional) and asks verdict about every request with auth_request,
// forwarding the client's certificate in X-SSL-Client-Cert only — the way
// most nginx deployments are set up. It sets no X-Forwarded-Client-Cert,
// so whatever arrives in that header came from the client: nginx's
// auth_request relays every client header to the authorizer.
func nginxMTLSConf(prefix string, port int, verdictAddr, upstreamAddr string) string {
	return nginxHTTP(prefix, fmt.Sprintf(`    # $request_uri is the client's request, also inside the auth subrequest.
    map $request_uri $verdict_action {
        ~^/inventory/reserve(\?|$) inventory:reserve;
        default "";
    }

    server {
        listen 127.0.0.1:%[2]d ssl;
        ssl_certificate %[1]s/nginx.pem;
        ssl_certificate_key %[1]s/nginx-key.pem;
        ssl_client_certificate %[1]s/ca.pem;
        ssl_verify_client optional;

%[3]s
        location / {
            auth_request /_verdict;
            auth_request_set $verdict_caller $upstream_http_x_verdict_caller;
            proxy_set_header X-Verdict-Caller $verdict_caller;
            proxy_pass http://%[4]s;
        }
    }
`, prefix, port, nginxAuthLocation(verdictAddr, "X-Verdict-Action $verdict_action", "X-SSL-Client-Cert $ssl_client_escaped_cert"), upstreamAddr))
}

// TestNginxForwardedCertificates puts a real nginx terminating mTLS in
// front of an upstream, configured as above, with verdict reading forwarded
// certificates only from X-SSL-Client-Cert (callers.escaped_cert_header)
// and only from nginx (callers.trusted_proxies). Certificates are public:
// a client without the payments key must not become payments by sending
// the payments certificate in a header nginx does not overwrite.
func TestNginxForwardedCertificates(t *testing.T) {
	t.Parallel()
	nginx := needBinary(t, "nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
	ca := authztest.NewCA(t, "mesh CA")
	payments := ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})
	server := loopbackServer(t, ca, "nginx")
	rogue := authztest.NewCA(t, "rogue CA").Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}})

	f := newFixture(t)
	authztest.WriteFile(t, filepath.Join(f.Dir, "ca.pem"), string(ca.PEM()))
	v := f.start(t, configWithPolicies(actionHeaderYAML+`decision_log: off
callers:
  trusted_proxies: [127.0.0.1/32]
  trust_bundle_file: ca.pem
  escaped_cert_header: X-SSL-Client-Cert
`), nil)

	var hits atomic.Int64
	var lastCaller atomic.Value
	up := newUpstreamFunc(t, func(r *http.Request) {
		hits.Add(1)
		lastCaller.Store(r.Header.Get("X-Verdict-Caller"))
	})

	prefix := t.TempDir()
	for name, b := range map[string][]byte{"ca.pem": ca.PEM(), "nginx.pem": server.CertPEM, "nginx-key.pem": server.KeyPEM} {
		authztest.WriteFile(t, filepath.Join(prefix, name), string(b))
	}
	client := func(certs ...tls.Certificate) *http.Client {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: certs, MinVersion: tls.VersionTLS12}}}
		t.Cleanup(c.CloseIdleConnections)
		return c
	}
	base := startNginx(t, nginx, prefix, "https", client(), func(port int) string {
		return nginxMTLSConf(prefix, port, v.Addr, up.Listener.Addr().String())
	})

	for _, tc := range []struct {
		name       string
		client     *http.Client
		header     map[string]string
		wantStatus int
		wantCaller string
	}{
		{name: "payments with its key and certificate", client: client(payments.TLS),
			wantStatus: 200, wantCaller: paymentsSPIFFE},
		{name: "no certificate, payments certificate in X-Forwarded-Client-Cert", client: client(),
			header: map[string]string{"X-Forwarded-Client-Cert": authztest.XFCC(payments.CertPEM)}, wantStatus: 401},
		{name: "no certificate, payments certificate in X-SSL-Client-Cert", client: client(),
			header: map[string]string{"X-SSL-Client-Cert": authztest.EscapePEM(payments.CertPEM)}, wantStatus: 401},
		{name: "no certificate", client: client(), wantStatus: 401},
		{name: "payments, and a forged XFCC naming it again", client: client(payments.TLS),
			header: map[string]string{"X-Forwarded-Client-Cert": authztest.XFCC(payments.CertPEM)}, wantStatus: 200, wantCaller: paymentsSPIFFE},
		// Go's TLS client sends no certificate that nginx's CA list does not
		// name; either way, the rogue payments is not payments.
		{name: "a certificate from another CA", client: client(rogue.TLS), wantStatus: 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			r := do(t, tc.client, http.MethodPost, base+"/inventory/reserve", nil, tc.header)
			if r.Status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
			}
			if tc.wantStatus != 200 {
				if hits.Load() != before {
					t.Errorf("a %d request reached the upstream", r.Status)
				}
				return
			}
			if got, _ := lastCaller.Load().(string); got != tc.wantCaller {
				t.Errorf("upstream saw X-Verdict-Caller %q, want %q", got, tc.wantCaller)
			}
		})
	}
}

// newUpstreamFunc is an upstream that calls seen for every request and
// answers 200 with a small JSON body.
func newUpstreamFunc(t *testing.T, seen func(r *http.Request)) *upstream {
	t.Helper()
	u := newUpstream(t)
	u.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen(r)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"ok": "yes"})
	})
	return u
}
