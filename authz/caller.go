package authz

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/token"
)

// Caller is the calling service's credential. At most one of Certificate,
// Token and Principal may be set; with none, the caller is anonymous
// (input.caller.method "none").
type Caller struct {
	// Certificate is the caller's leaf certificate. The engine does not
	// verify it: it must come from a TLS handshake that verified the chain
	// (see CallerFromTLS), or from a forwarded header that the HTTP front
	// verified against its trust bundle (then set Forwarded). One without
	// its DER encoding (Raw, which x509.ParseCertificate sets) is refused.
	Certificate *x509.Certificate
	// Forwarded says Certificate was forwarded by a trusted proxy rather than
	// presented on this connection: input.caller.method is "forwarded_cert"
	// instead of "mtls".
	Forwarded bool
	// Token is a service token (compact JWT), verified under the same issuer
	// rules as the subject's token but against the caller audiences. It
	// prints and logs redacted.
	Token token.Raw
	// Principal is the caller's identity as a service mesh verified it
	// (Envoy's source.principal, a SPIFFE ID under Istio): input.caller.method
	// is "mesh". The engine does not verify it: set it only for a principal
	// from a mesh proxy the front trusts.
	Principal string
}

// CallerFromTLS returns the mTLS peer as the caller when the handshake
// verified a client certificate chain, and the anonymous caller otherwise.
// A peer certificate that the TLS stack did not verify (client_auth
// "request" without a CA) is never believed.
func CallerFromTLS(cs *tls.ConnectionState) Caller {
	if cs == nil || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return Caller{}
	}
	return Caller{Certificate: cs.VerifiedChains[0][0]}
}

// CertificateID returns the caller id a certificate proves, as
// input.caller.id names it: the SPIFFE ID (URI SAN) when present, else the
// first DNS SAN, else the subject CN. It also returns the SPIFFE ID alone
// ("" when none). A certificate with more than one SPIFFE ID, with no
// identity at all, or whose DNS SAN or CN standing in for the id is
// written as a URI ("spiffe://..."), is a *Refusal of category ErrCaller. It does not verify
// the certificate: pass only one a TLS handshake or a trust bundle verified.
func CertificateID(cert *x509.Certificate) (id, spiffeID string, err error) {
	for _, u := range cert.URIs {
		if strings.EqualFold(u.Scheme, "spiffe") {
			if spiffeID != "" {
				return "", "", Refusef(ErrCaller, "certificate has more than one SPIFFE ID")
			}
			spiffeID = u.String()
		}
	}
	id = spiffeID
	if id == "" && len(cert.DNSNames) > 0 {
		id = cert.DNSNames[0]
	}
	if id == "" {
		id = cert.Subject.CommonName
	}
	if id == "" {
		return "", "", Refusef(ErrCaller, "certificate names no identity (no URI SAN, DNS SAN or CN)")
	}
	if spiffeID == "" && strings.Contains(id, "://") {
		// Only a URI SAN names a SPIFFE ID (or any URI): a CN or DNS name
		// written as one would pass for it in input.caller.id and in
		// authzen.trusted_callers.
		return "", "", Refusef(ErrCaller, "certificate's DNS name or CN is written as a URI; only a URI SAN may name one")
	}
	return id, spiffeID, nil
}

// certificateCaller builds input.caller for a verified certificate, named
// by CertificateID.
func certificateCaller(cert *x509.Certificate, forwarded bool) (*ast.Term, string, error) {
	id, spiffeID, err := CertificateID(cert)
	if err != nil {
		return nil, "", err
	}
	uris := make([]*ast.Term, len(cert.URIs))
	for i, u := range cert.URIs {
		uris[i] = ast.StringTerm(u.String())
	}
	dns := make([]*ast.Term, len(cert.DNSNames))
	for i, n := range cert.DNSNames {
		dns[i] = ast.StringTerm(n)
	}
	certObj := ast.NewObject(
		ast.Item(keySubjectDN, ast.StringTerm(cert.Subject.String())),
		ast.Item(keyIssuer, ast.StringTerm(cert.Issuer.String())),
		ast.Item(keySerial, ast.StringTerm(cert.SerialNumber.Text(16))),
		ast.Item(keyDNSNames, ast.ArrayTerm(dns...)),
		ast.Item(keyURIs, ast.ArrayTerm(uris...)),
		ast.Item(keyNotAfter, ast.StringTerm(cert.NotAfter.UTC().Format(time.RFC3339))),
	)
	method := CallerMTLS
	if forwarded {
		method = CallerForwardedCert
	}
	obj := ast.NewObject(
		ast.Item(keyAuthenticated, ast.InternedTerm(true)),
		ast.Item(keyID, ast.StringTerm(id)),
		ast.Item(keyMethod, ast.StringTerm(method)),
		ast.Item(keyCertificate, ast.NewTerm(certObj)),
	)
	if spiffeID != "" {
		obj.Insert(keySpiffeID, ast.StringTerm(spiffeID))
	}
	return ast.NewTerm(obj), id, nil
}

// meshCaller builds input.caller for a principal the mesh verified.
func meshCaller(principal string) *ast.Term {
	obj := ast.NewObject(
		ast.Item(keyAuthenticated, ast.InternedTerm(true)),
		ast.Item(keyID, ast.StringTerm(principal)),
		ast.Item(keyMethod, ast.InternedTerm(CallerMesh)),
	)
	if strings.HasPrefix(strings.ToLower(principal), "spiffe://") {
		obj.Insert(keySpiffeID, ast.StringTerm(principal))
	}
	return ast.NewTerm(obj)
}

// serviceID names a caller that proved itself with a service token: azp,
// else client_id, else sub.
func serviceID(claims map[string]any) string {
	for _, k := range [...]string{"azp", "client_id", "sub"} {
		if s, ok := claims[k].(string); ok && s != "" {
			return s
		}
	}
	return ""
}
