package authz_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// leaf makes a certificate (self-signed: the engine trusts what TLS or the
// HTTP front verified, so only the names matter here).
func leaf(t *testing.T, cn string, dns []string, uris ...string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(0xbeef),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Shop"}},
		DNSNames:     dns,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

const echoCaller = `package authz

allow := true

headers := {"x-id": object.get(input.caller, "id", ""), "x-method": input.caller.method,
	"x-spiffe": object.get(input.caller, "spiffe_id", ""),
	"x-dns": concat(",", object.get(input.caller, ["certificate", "dns_names"], [])),
	"x-authenticated": sprintf("%v", [input.caller.authenticated])}
`

func TestCallerIdentity(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}},
		authztest.Policy(t, "r", echoCaller))
	spiffe := "spiffe://verdict.example/ns/shop/sa/payments"
	tests := []struct {
		name    string
		caller  authz.Caller
		want    map[string]string
		wantErr error
	}{
		{name: "none", caller: authz.Caller{},
			want: map[string]string{"x-id": "", "x-method": "none", "x-spiffe": "", "x-dns": "", "x-authenticated": "false"}},
		{name: "spiffe id wins", caller: authz.Caller{Certificate: leaf(t, "pay", []string{"pay.svc"}, "https://example.com/x", spiffe)},
			want: map[string]string{"x-id": spiffe, "x-method": "mtls", "x-spiffe": spiffe, "x-dns": "pay.svc", "x-authenticated": "true"}},
		{name: "dns san next", caller: authz.Caller{Certificate: leaf(t, "pay", []string{"pay.svc", "other.svc"}), Forwarded: true},
			want: map[string]string{"x-id": "pay.svc", "x-method": "forwarded_cert", "x-spiffe": "", "x-dns": "pay.svc,other.svc", "x-authenticated": "true"}},
		{name: "cn last", caller: authz.Caller{Certificate: leaf(t, "payments", nil)},
			want: map[string]string{"x-id": "payments", "x-method": "mtls", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token azp", caller: authz.Caller{Token: is.Mint(t, map[string]any{"azp": "payments", "client_id": "c", "sub": "s"})},
			want: map[string]string{"x-id": "payments", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token client_id", caller: authz.Caller{Token: is.Mint(t, map[string]any{"client_id": "c", "sub": "s"})},
			want: map[string]string{"x-id": "c", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token sub", caller: authz.Caller{Token: is.Mint(t, map[string]any{"sub": "s"})},
			want: map[string]string{"x-id": "s", "x-method": "token", "x-spiffe": "", "x-dns": "", "x-authenticated": "true"}},
		{name: "service token names nobody", caller: authz.Caller{Token: is.Mint(t, map[string]any{"sub": nil})}, wantErr: authz.ErrCaller},
		{name: "invalid service token", caller: authz.Caller{Token: tamper(is.Mint(t, nil))}, wantErr: token.ErrBadSignature},
		{name: "certificate without identity", caller: authz.Caller{Certificate: leaf(t, "", nil)}, wantErr: authz.ErrCaller},
		{name: "two spiffe ids", caller: authz.Caller{Certificate: leaf(t, "x", nil, spiffe, spiffe+"2")}, wantErr: authz.ErrCaller},
		{name: "certificate and token", caller: authz.Caller{Certificate: leaf(t, "x", nil), Token: is.Mint(t, nil)}, wantErr: authz.ErrCaller},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := e.Decide(t.Context(), authz.Request{Caller: tc.caller, Action: authz.Action{Name: "x"}})
			if tc.wantErr != nil {
				if d.Allow || !errors.Is(err, authz.ErrCaller) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %+v, %v; want a caller deny wrapping %v", d, err, tc.wantErr)
				}
				if len(d.Reasons) != 1 || d.Reasons[0][:len("caller: ")] != "caller: " {
					t.Errorf("reasons = %q, want one starting caller:", d.Reasons)
				}
				return
			}
			if err != nil || !d.Allow {
				t.Fatalf("Decide: %+v, %v", d, err)
			}
			if diff := cmp.Diff(tc.want, d.Headers); diff != "" {
				t.Errorf("caller (-want +got):\n%s", diff)
			}
			if d.CallerID != tc.want["x-id"] {
				t.Errorf("CallerID = %q, want %q", d.CallerID, tc.want["x-id"])
			}
		})
	}
}

func TestCallerFromTLS(t *testing.T) {
	cert := leaf(t, "svc", nil)
	if c := authz.CallerFromTLS(nil); c.Certificate != nil {
		t.Error("nil connection state gave a caller")
	}
	unverified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}
	if c := authz.CallerFromTLS(unverified); c.Certificate != nil {
		t.Error("a peer certificate the handshake did not verify was believed")
	}
	verified := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}, VerifiedChains: [][]*x509.Certificate{{cert}}}
	if c := authz.CallerFromTLS(verified); c.Certificate != cert || c.Forwarded {
		t.Errorf("verified peer: got %+v", c)
	}
}
