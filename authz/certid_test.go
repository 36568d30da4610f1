package authz_test

import (
	"errors"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestCertificateID: the id of a certificate is its SPIFFE ID, else its
// first DNS SAN, else its CN — the same id input.caller.id carries, which
// fronts compare with their allowlists (authzen.trusted_callers).
func TestCertificateID(t *testing.T) {
	ca := authztest.NewCA(t, "certid ca")
	tests := []struct {
		name         string
		leaf         authztest.LeafOptions
		wantID       string
		wantSPIFFEID string
		wantErr      bool
	}{
		{name: "SPIFFE ID first", leaf: authztest.LeafOptions{CommonName: "cn", DNSNames: []string{"a.svc"},
			URIs: []string{"https://example.org/x", "spiffe://example.org/pep"}}, wantID: "spiffe://example.org/pep", wantSPIFFEID: "spiffe://example.org/pep"},
		{name: "then the first DNS SAN", leaf: authztest.LeafOptions{CommonName: "cn", DNSNames: []string{"a.svc", "b.svc"},
			URIs: []string{"https://example.org/x"}}, wantID: "a.svc"},
		{name: "then the CN", leaf: authztest.LeafOptions{CommonName: "cn"}, wantID: "cn"},
		{name: "no identity", leaf: authztest.LeafOptions{}, wantErr: true},
		{name: "two SPIFFE IDs", leaf: authztest.LeafOptions{URIs: []string{"spiffe://example.org/a", "SPIFFE://example.org/b"}}, wantErr: true},
		// A CN or DNS name written as a SPIFFE ID would pass for it in
		// input.caller.id and authzen.trusted_callers.
		{name: "CN written as a SPIFFE ID", leaf: authztest.LeafOptions{CommonName: "spiffe://example.org/pep"}, wantErr: true},
		{name: "DNS name written as a SPIFFE ID", leaf: authztest.LeafOptions{DNSNames: []string{"spiffe://example.org/pep"}}, wantErr: true},
		{name: "CN written as a URI beside another URI SAN", leaf: authztest.LeafOptions{CommonName: "spiffe://example.org/pep",
			URIs: []string{"https://attacker.example"}}, wantErr: true},
		{name: "a SPIFFE ID beside a CN written as one", leaf: authztest.LeafOptions{CommonName: "spiffe://example.org/other",
			URIs: []string{"spiffe://example.org/pep"}}, wantID: "spiffe://example.org/pep", wantSPIFFEID: "spiffe://example.org/pep"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, spiffeID, err := authz.CertificateID(ca.Issue(t, tc.leaf).Cert)
			if tc.wantErr {
				if !errors.Is(err, authz.ErrCaller) {
					t.Fatalf("err = %v, want ErrCaller", err)
				}
				return
			}
			if err != nil || id != tc.wantID || spiffeID != tc.wantSPIFFEID {
				t.Errorf("CertificateID = %q, %q, %v; want %q, %q", id, spiffeID, err, tc.wantID, tc.wantSPIFFEID)
			}
		})
	}
}
