package authztest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CA is a certificate authority for tests: a self-signed P-256 CA
// certificate whose key is generated when the test runs and kept in memory
// only. It issues leaf certificates for mTLS and forwarded-certificate
// tests. A CA is safe for concurrent use.
type CA struct {
	// Cert is the CA certificate, valid from an hour ago for a day.
	Cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA returns a new CA whose subject common name is name.
func NewCA(tb testing.TB, name string) *CA {
	tb.Helper()
	key := newP256(tb)
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	return &CA{Cert: createCert(tb, tmpl, tmpl, key.Public(), key), key: key}
}

// PEM returns the CA certificate as a PEM CERTIFICATE block, as a trust
// bundle file holds it.
func (ca *CA) PEM() []byte { return certPEM(ca.Cert) }

// Pool returns a new pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// LeafOptions describe a leaf certificate for CA.Issue. The zero value is
// a client certificate without names, valid for 12 hours.
type LeafOptions struct {
	// CommonName is the subject's common name.
	CommonName string
	// DNSNames, URIs and IPAddresses are the subject alternative names. A
	// URI that does not parse fails the test.
	DNSNames    []string
	URIs        []string
	IPAddresses []net.IP
	// ExtKeyUsage is the extended key usage; nil means client
	// authentication only.
	ExtKeyUsage []x509.ExtKeyUsage
	// NotAfter ends the validity (which starts an hour ago); zero means 12
	// hours from now. A time in the past makes an expired certificate.
	NotAfter time.Time
	// Key is the certificate's key pair; nil means a new P-256 key.
	Key crypto.Signer
}

// Leaf is a certificate issued by a CA, with its private key in the forms
// tests hand to TLS stacks, proxies and parsers.
type Leaf struct {
	// Cert is the parsed certificate.
	Cert *x509.Certificate
	// Key is the certificate's private key.
	Key crypto.Signer
	// CertPEM is Cert as a PEM CERTIFICATE block; KeyPEM is Key as a PEM
	// PKCS #8 PRIVATE KEY block.
	CertPEM, KeyPEM []byte
	// TLS is the certificate and key for tls.Config.Certificates.
	TLS tls.Certificate
}

// Issue returns a new leaf certificate signed by ca, with a random serial
// number and key usage digital signature.
func (ca *CA) Issue(tb testing.TB, o LeafOptions) Leaf {
	tb.Helper()
	key := o.Key
	if key == nil {
		key = newP256(tb)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: o.CommonName},
		DNSNames:     o.DNSNames,
		IPAddresses:  o.IPAddresses,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     o.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  o.ExtKeyUsage,
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(12 * time.Hour)
	}
	if tmpl.ExtKeyUsage == nil {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	for _, s := range o.URIs {
		u, err := url.Parse(s)
		if err != nil {
			tb.Fatalf("authztest: certificate URI %q: %v", s, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	cert := createCert(tb, tmpl, ca.Cert, key.Public(), ca.key)
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("authztest: marshal leaf key: %v", err)
	}
	return Leaf{
		Cert:    cert,
		Key:     key,
		CertPEM: certPEM(cert),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		TLS:     tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert},
	}
}

// StartTLS starts srv with TLS, closes it when the test ends, and returns
// the path of a PEM file holding its certificate, for a client that must be
// configured to trust it (a ca_file). srv's error log is discarded: tests
// that use it expect a client without that file to refuse the handshake.
func StartTLS(tb testing.TB, srv *httptest.Server) (caFile string) {
	tb.Helper()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	tb.Cleanup(srv.Close)
	caFile = filepath.Join(tb.TempDir(), "ca.pem")
	WriteFile(tb, caFile, string(certPEM(srv.Certificate())))
	return caFile
}

// EscapePEM percent-encodes PEM as nginx's $ssl_client_escaped_cert does
// (and as Envoy encodes an XFCC Cert value): every byte but the URI
// unreserved characters A-Z a-z 0-9 - . _ ~ becomes %XX, so newlines are
// %0A, spaces %20 and the base64 '+', '/' and '=' are escaped too.
func EscapePEM(p []byte) string {
	var b strings.Builder
	for _, c := range p {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// XFCC returns an Envoy x-forwarded-client-cert element carrying cert (PEM)
// as Cert (escaped as EscapePEM does) beside the By, Hash, Subject and URI
// pairs Envoy also writes, which a reader of Cert must skip.
func XFCC(cert []byte) string {
	return `By=spiffe://verdict.example/envoy;Hash=abc123;Cert="` + EscapePEM(cert) +
		`";Subject="CN=x,O=y";URI=spiffe://verdict.example/ns/shop/sa/payments`
}

func newP256(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("authztest: generate ecdsa key: %v", err)
	}
	return k
}

func serial(tb testing.TB) *big.Int {
	tb.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		tb.Fatalf("authztest: serial number: %v", err)
	}
	return n
}

// createCert signs tmpl with parentKey and parses the result.
func createCert(tb testing.TB, tmpl, parent *x509.Certificate, pub crypto.PublicKey, parentKey crypto.Signer) *x509.Certificate {
	tb.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		tb.Fatalf("authztest: create certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("authztest: parse certificate: %v", err)
	}
	return cert
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
