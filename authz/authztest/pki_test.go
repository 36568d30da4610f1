package authztest_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestCAIssue(t *testing.T) {
	ca := authztest.NewCA(t, "test ca")
	if !ca.Cert.IsCA || ca.Cert.Subject.CommonName != "test ca" {
		t.Fatalf("CA certificate: IsCA %v, CN %q", ca.Cert.IsCA, ca.Cert.Subject.CommonName)
	}
	spiffe := "spiffe://verdict.example/ns/shop/sa/payments"
	tests := []struct {
		name      string
		opts      authztest.LeafOptions
		wantUsage x509.ExtKeyUsage
	}{
		{name: "client by default", opts: authztest.LeafOptions{CommonName: "payments", URIs: []string{spiffe}, DNSNames: []string{"pay.svc"}},
			wantUsage: x509.ExtKeyUsageClientAuth},
		{name: "server", opts: authztest.LeafOptions{CommonName: "verdict", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, wantUsage: x509.ExtKeyUsageServerAuth},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := ca.Issue(t, tc.opts)
			if _, err := l.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{tc.wantUsage}}); err != nil {
				t.Fatalf("leaf does not verify against the CA for %v: %v", tc.wantUsage, err)
			}
			if l.Cert.Subject.CommonName != tc.opts.CommonName || len(l.Cert.URIs) != len(tc.opts.URIs) ||
				len(l.Cert.DNSNames) != len(tc.opts.DNSNames) || len(l.Cert.IPAddresses) != len(tc.opts.IPAddresses) {
				t.Errorf("names: CN %q, URIs %v, DNS %v, IPs %v", l.Cert.Subject.CommonName, l.Cert.URIs, l.Cert.DNSNames, l.Cert.IPAddresses)
			}
			pair, err := tls.X509KeyPair(l.CertPEM, l.KeyPEM)
			if err != nil {
				t.Fatalf("CertPEM and KeyPEM are not a key pair: %v", err)
			}
			if !pair.Leaf.Equal(l.Cert) || !l.TLS.Leaf.Equal(l.Cert) || string(l.TLS.Certificate[0]) != string(l.Cert.Raw) {
				t.Error("CertPEM, TLS and Cert hold different certificates")
			}
		})
	}

	a, b := ca.Issue(t, authztest.LeafOptions{}), ca.Issue(t, authztest.LeafOptions{})
	if a.Cert.SerialNumber.Cmp(b.Cert.SerialNumber) == 0 || a.Key.Public().(*ecdsa.PublicKey).Equal(b.Key.Public()) {
		t.Error("two leaves share a serial number or a key")
	}
	if other := authztest.NewCA(t, "other ca"); a.Cert.CheckSignatureFrom(other.Cert) == nil {
		t.Error("a leaf verifies against another CA")
	}
}

func TestIssueOptions(t *testing.T) {
	ca := authztest.NewCA(t, "ca")
	expired := ca.Issue(t, authztest.LeafOptions{NotAfter: time.Now().Add(-time.Minute)})
	var ie x509.CertificateInvalidError
	if _, err := expired.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); !errors.As(err, &ie) || ie.Reason != x509.Expired {
		t.Errorf("NotAfter in the past: Verify = %v, want expired", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if l := ca.Issue(t, authztest.LeafOptions{Key: key}); !key.PublicKey.Equal(l.Cert.PublicKey) || l.Key != key {
		t.Error("the given Key is not the certificate's")
	}
}

func TestCAPEM(t *testing.T) {
	ca := authztest.NewCA(t, "ca")
	block, rest := pem.Decode(ca.PEM())
	if block == nil || block.Type != "CERTIFICATE" || len(rest) != 0 || string(block.Bytes) != string(ca.Cert.Raw) {
		t.Fatalf("PEM = %q", ca.PEM())
	}
	want := x509.NewCertPool()
	want.AddCert(ca.Cert)
	if !ca.Pool().Equal(want) {
		t.Error("Pool does not hold exactly the CA certificate")
	}
}

func TestEscapePEM(t *testing.T) {
	in := "-----BEGIN CERTIFICATE-----\nMIIB+a/b=\n-----END CERTIFICATE-----\n"
	got := authztest.EscapePEM([]byte(in))
	want := "-----BEGIN%20CERTIFICATE-----%0AMIIB%2Ba%2Fb%3D%0A-----END%20CERTIFICATE-----%0A"
	if got != want {
		t.Errorf("EscapePEM = %q, want %q", got, want)
	}
	if back, err := url.PathUnescape(got); err != nil || back != in {
		t.Errorf("does not round-trip: %q, %v", back, err)
	}
}

func TestXFCC(t *testing.T) {
	p := []byte("-----BEGIN CERTIFICATE-----\nAA+/==\n-----END CERTIFICATE-----\n")
	got := authztest.XFCC(p)
	if !strings.Contains(got, `;Cert="`+authztest.EscapePEM(p)+`";`) || strings.ContainsAny(got, "\n ") {
		t.Errorf("XFCC = %q", got)
	}
}

func TestStartTLS(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	caFile := authztest.StartTLS(t, srv)
	data, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		t.Fatalf("%s holds no certificate", caFile)
	}
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer c.CloseIdleConnections()
	resp, err := c.Get(srv.URL)
	if err != nil {
		t.Fatalf("a client trusting the file: %v", err)
	}
	resp.Body.Close()
	if _, err := http.Get(srv.URL); err == nil {
		t.Error("a client with the system roots trusted the server")
	}
}
