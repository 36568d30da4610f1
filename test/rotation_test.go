package test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestKeyFilesRotate runs verdict on the fixture's two file issuers and
// rotates both files while it serves, as an operator (or a Secret
// update) would: a token of a key that left is denied at once, though its
// verification was cached, and a token of the new key is allowed. A file
// rotated to something that cannot serve adds nothing and says so in the
// log, in /v1/status and in metrics, until the file is good again; it
// keeps the keys in service when it is not a key set at all, and drops
// those it no longer holds when it is one.
func TestKeyFilesRotate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.start(t, configWithPolicies(""), nil)
	decide := func(tok string) answer {
		return p.decideOK(t, mustJSON(t, map[string]any{"token": tok, "action": "orders:read"}))
	}
	viewer := map[string]any{"roles": []string{"viewer"}}
	allowedThen := func(what string, tok string, want bool) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			if a := decide(tok); a.Allow != want {
				return fmt.Sprintf("%s: allow %v (%v), want %v", what, a.Allow, a.Reasons, want)
			}
			return ""
		})
	}

	// public_key_file: a PEM key with no kid, replaced in place.
	oldPEM := f.Issuer.Mint(t, viewer)
	allowedThen("the PEM issuer's token", oldPEM, true) // and now cached
	next := authztest.NewIssuer(t, "ES256")
	authztest.WriteFile(t, filepath.Join(f.Dir, "issuer.pem"), string(next.PublicKeyPEM(t)))
	allowedThen("the new PEM key's token", next.Mint(t, viewer), true)
	if a := decide(oldPEM); a.Allow || len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], "token:") {
		t.Fatalf("the old PEM key's cached token after rotation: %v %v", a.Allow, a.Reasons)
	}

	// A whole PEM file holding a key that cannot serve (too weak) revokes
	// the key in service; a good one serves again.
	nextPEM := next.Mint(t, viewer)
	allowedThen("the new PEM key's token", nextPEM, true)
	writeAtomic(t, filepath.Join(f.Dir, "issuer.pem"), weakRSAPEM(t))
	allowedThen("the PEM key's cached token after a weak key replaced it", nextPEM, false)
	writeAtomic(t, filepath.Join(f.Dir, "issuer.pem"), string(next.PublicKeyPEM(t)))
	allowedThen("the PEM key's token once it is back", nextPEM, true)

	// jwks_file: renamed over, a new kid beside the old, then the old gone.
	oldJWKS := f.Issuer2.Mint(t, viewer)
	allowedThen("the JWKS issuer's token", oldJWKS, true)
	next2 := authztest.NewIssuer(t, "EdDSA")
	next2.Name, next2.KeyID = issuerJWKS, "next"
	both := jwksOf(t, f.Issuer2, next2)
	writeAtomic(t, filepath.Join(f.Dir, "jwks.json"), both)
	allowedThen("the added key's token", next2.Mint(t, viewer), true)
	allowedThen("the old key's token during the overlap", oldJWKS, true)
	onlyNext2 := string(authztest.JWKS(t, next2))
	writeAtomic(t, filepath.Join(f.Dir, "jwks.json"), onlyNext2)
	allowedThen("the removed key's cached token", oldJWKS, false)

	// Rotated to files that cannot serve. What serves stays when the file
	// is not a key set at all (half-written, say); a whole key set that is
	// refused adds nothing, but still revokes the keys it no longer holds.
	const name = "tokens.issuers[1].jwks_file"
	var withNext2 map[string]any
	if err := json.Unmarshal(authztest.JWKS(t, next2), &withNext2); err != nil {
		t.Fatal(err)
	}
	withNext2["keys"] = append(withNext2["keys"].([]any), map[string]any{"kty": "oct", "kid": "shared", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"})
	next2Token := next2.Mint(t, viewer) // verified and cached before each change
	allowedThen("the new key's token", next2Token, true)
	for _, bad := range []struct {
		what, data, why string
		next2Allowed    bool
	}{
		{"not a key set", `{"keys": [`, "jwks.json", true},
		{"a shared secret beside the key", mustJSON(t, withNext2), "key 1", true},
		{"only a key the issuer's algorithms cannot use", string(authztest.JWKS(t, authztest.NewIssuer(t, "ES256"))),
			"no key can verify any of algorithms [EdDSA]", false},
	} {
		writeAtomic(t, filepath.Join(f.Dir, "jwks.json"), bad.data)
		eventually(t, 10*time.Second, func() string {
			if e := credentialError(t, p, name); !strings.Contains(e, bad.why) {
				return fmt.Sprintf("%s: /v1/status last_error %q, want it to say %q", bad.what, e, bad.why)
			}
			return ""
		})
		if a := decide(next2Token); a.Allow != bad.next2Allowed {
			t.Fatalf("%s: the key in service allowed %v (%v), want %v", bad.what, a.Allow, a.Reasons, bad.next2Allowed)
		}
	}
	if !strings.Contains(p.Stderr.String(), "credentials reload failed") {
		t.Errorf("no log line for the refused file")
	}
	if m := metrics(t, p); !strings.Contains(m, `verdict_credentials_last_reload_ok{name="`+name+`"} 0`) ||
		!strings.Contains(m, `verdict_credentials_reload_errors_total{name="`+name+`"} 3`) {
		t.Errorf("metrics do not show the refused file:\n%s", grepLines(m, "verdict_credentials"))
	}
	// Rolled back to the very bytes in service before the refusals: the
	// key they revoked serves again.
	writeAtomic(t, filepath.Join(f.Dir, "jwks.json"), onlyNext2)
	allowedThen("the revoked key's token after the rollback", next2Token, true)
	writeAtomic(t, filepath.Join(f.Dir, "jwks.json"), both)
	allowedThen("the old key's token once it is back", oldJWKS, true)
	if e := credentialError(t, p, name); e != "" {
		t.Errorf("error still shown after a good file: %q", e)
	}
}

// TestTLSFilesRotate serves over mTLS (client_auth: require) and rotates
// the certificate, its key and the client CA bundle while serving, as a
// certificate manager renewing into a Secret would: new connections get
// the new certificate, a client of the CA rotated out fails the handshake,
// one of the CA rotated in is the caller. A certificate that does not
// match its key (the moment between two writes) never serves.
func TestTLSFilesRotate(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	oldCA, newCA := authztest.NewCA(t, "old CA"), authztest.NewCA(t, "new CA")
	oldServer, newServer := loopbackServer(t, oldCA, "verdict"), loopbackServer(t, newCA, "verdict")
	payments := func(ca *authztest.CA) tls.Certificate {
		return ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{paymentsSPIFFE}}).TLS
	}
	oldClient, newClient := payments(oldCA), payments(newCA)
	write := func(ca *authztest.CA, server authztest.Leaf) {
		writeAtomic(t, filepath.Join(f.Dir, "ca.pem"), string(ca.PEM()))
		writeAtomic(t, filepath.Join(f.Dir, "server.pem"), string(server.CertPEM))
		writeAtomic(t, filepath.Join(f.Dir, "server-key.pem"), string(server.KeyPEM))
	}
	write(oldCA, oldServer)
	roots := x509.NewCertPool()
	roots.AddCert(oldCA.Cert)
	roots.AddCert(newCA.Cert)
	p := f.start(t, configWithPolicies(`tls:
  cert_file: server.pem
  key_file: server-key.pem
  client_ca_file: ca.pem
  client_auth: require
`), &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{oldClient}, MinVersion: tls.VersionTLS12})
	// ask asks on a new connection with client certificate c.
	ask := func(c tls.Certificate) (served *x509.Certificate, a answer, err error) {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{c}, MinVersion: tls.VersionTLS12}}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, p.Base+"/v1/decide", strings.NewReader(`{"action":"inventory:reserve"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			return nil, a, err
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
			t.Fatal(err)
		}
		return resp.TLS.PeerCertificates[0], a, nil
	}
	if served, a, err := ask(oldClient); err != nil || !served.Equal(oldServer.Cert) || !a.Allow {
		t.Fatalf("before: %v %v %v", served, a.Reasons, err)
	}

	write(newCA, newServer)
	eventually(t, 10*time.Second, func() string {
		served, a, err := ask(newClient)
		if err != nil || !served.Equal(newServer.Cert) || !a.Allow {
			return fmt.Sprintf("after: served %v, %v, %v", served, a.Reasons, err)
		}
		return ""
	})
	if _, a, err := ask(oldClient); err == nil {
		t.Fatalf("a client of the CA rotated out was served: %v", a.Reasons)
	}
	// Nothing between the writes served a certificate without its key:
	// every handshake above either failed or verified.
	if strings.Contains(p.Stderr.String(), "panic") {
		t.Fatal("panic in the log")
	}
}

// jwksOf is a JWKS holding the public keys of issuers.
func jwksOf(t *testing.T, issuers ...*authztest.Issuer) string {
	t.Helper()
	var all struct {
		Keys []json.RawMessage `json:"keys"`
	}
	for _, is := range issuers {
		var one struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if err := json.Unmarshal(authztest.JWKS(t, is), &one); err != nil {
			t.Fatal(err)
		}
		all.Keys = append(all.Keys, one.Keys...)
	}
	return mustJSON(t, all)
}

// credentialError is the last_error /v1/status shows for the credential
// file named name.
func credentialError(t *testing.T, p *process, name string) string {
	t.Helper()
	_, raw := status(t, p)
	var doc struct {
		Credentials []struct {
			Name      string `json:"name"`
			LastError string `json:"last_error"`
		} `json:"credentials"`
	}
	if err := json.Unmarshal([]byte(raw), &doc); err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.Credentials {
		if c.Name == name {
			return c.LastError
		}
	}
	t.Fatalf("/v1/status has no credentials entry %q: %s", name, raw)
	return ""
}

// weakRSAPEM is a PEM public key too weak to verify tokens (RSA 1024).
func weakRSAPEM(t *testing.T) string {
	t.Helper()
	_, public := rsaKeyPEM(t, 1024)
	return string(public)
}

// rsaKeyPEM generates an RSA key of bits at test time (never stored): the
// private key as a PKCS #1 PEM block, the public key as a PKIX one.
func rsaKeyPEM(t *testing.T, bits int) (private, public []byte) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// TestBundleVerificationKeyRotates serves a signed bundle_file and rotates
// its verification key file as an operator would: the new key added
// beside the old, bundles signed with it, the old key removed. A bundle
// signed with a key not (yet) trusted is refused and the policy in service
// kept, and is read once its key arrives. A key file that cannot serve is
// refused and says so; a whole one (a private key, a key of another kind,
// not one cut short) still revokes the keys it no longer holds: with none
// left, every bundle is refused.
func TestBundleVerificationKeyRotates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	type pair struct{ private, public string }
	newPair := func() pair {
		private, public := rsaKeyPEM(t, 2048)
		return pair{string(private), string(public)}
	}
	oldKey, newKey := newPair(), newPair()
	keyFile, bundleFile := filepath.Join(f.Dir, "bundle.pem"), filepath.Join(f.Dir, "bundle.tar.gz")
	publish := func(signer pair, rev string) {
		t.Helper()
		writeAtomic(t, bundleFile, string(signedBundle(t, []byte(signer.private), rev, replicaPolicy(1))))
	}
	authztest.WriteFile(t, keyFile, oldKey.public)
	publish(oldKey, "v1")
	p := f.start(t, "addr: 127.0.0.1:0\npolicy:\n  bundle_file: bundle.tar.gz\n  verification_key_file: bundle.pem\n", nil)
	serves := func(what, rev string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			if st, _ := status(t, p); st.Revision != rev {
				return fmt.Sprintf("%s: revision %q, want %q", what, st.Revision, rev)
			}
			return ""
		})
		if a := p.decideOK(t, `{"action":"catalog:read"}`); a.Revision != rev || !a.Allow {
			t.Fatalf("%s: a decision on revision %q (allow %v), want %q", what, a.Revision, a.Allow, rev)
		}
	}
	refused := func(what, rev string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			st, raw := status(t, p)
			if st.Source == nil || !strings.Contains(st.Source.LastError, "signature") {
				return fmt.Sprintf("%s: no signature error in /v1/status: %s", what, raw)
			}
			return ""
		})
		serves(what+", refused", rev)
	}
	serves("signed with the key trusted", "v1")

	// Signed with the new key before it is trusted: refused, then read
	// once the key file holds both keys.
	publish(newKey, "v2")
	refused("signed with a key not trusted yet", "v1")
	writeAtomic(t, keyFile, oldKey.public+newKey.public)
	serves("the key added beside the old one", "v2")
	publish(oldKey, "v3")
	serves("signed with the old key during the overlap", "v3")

	// A file that is refused (a private key beside the new public key)
	// adds nothing, says why, and still revokes the key it dropped.
	const name = "policy.verification_key_file"
	refusedFile := func(what, why string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			if e := credentialError(t, p, name); !strings.Contains(e, why) {
				return fmt.Sprintf("%s: /v1/status last_error %q, want it to say %q", what, e, why)
			}
			return ""
		})
	}
	writeAtomic(t, keyFile, newKey.public+newKey.private)
	refusedFile("a private key", "private key")
	publish(oldKey, "v4")
	refused("signed with the key a refused file dropped", "v3")
	publish(newKey, "v5")
	serves("signed with the key a refused file kept", "v5")

	// A file that is not whole (no PEM at all: written half-way, say) is
	// refused and changes nothing.
	writeAtomic(t, keyFile, "not a key\n")
	refusedFile("no PEM at all", "not PEM")
	publish(newKey, "v6")
	serves("signed with the key in service beside a file that is not whole", "v6")

	// A whole refused file holding no key in service revokes them all:
	// every bundle is refused (the policy serving stays) until a good file.
	writeAtomic(t, keyFile, string(authztest.NewIssuer(t, "ES256").PublicKeyPEM(t)))
	refusedFile("an ECDSA key for RS256", "cannot verify RS256")
	publish(newKey, "v7")
	refused("signed while no key is in service", "v6")
	if _, raw := status(t, p); !strings.Contains(raw, "no bundle verification key in service") {
		t.Errorf("/v1/status does not say no key is in service: %s", raw)
	}
	writeAtomic(t, keyFile, newKey.public)
	serves("the bundle refused while no key served, once one does", "v7")
	if e := credentialError(t, p, name); e != "" {
		t.Errorf("/v1/status last_error %q after a good key file", e)
	}
	publish(oldKey, "v8")
	refused("signed with the key removed", "v7")
	publish(newKey, "v9")
	serves("signed with the new key", "v9")
}

// TestOutgoingCAFileRotates: an identity provider whose certificate moves
// to a new CA is refused until the issuer's ca_file is rotated to that CA,
// and then trusted without a restart: a key it added verifies tokens, and
// the key set keeps refreshing. A ca_file holding no certificate is
// refused and says so, the CAs before it kept.
func TestOutgoingCAFileRotates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	oldCA, newCA := authztest.NewCA(t, "old CA"), authztest.NewCA(t, "new CA")
	serverCert := func(ca *authztest.CA) *tls.Certificate {
		c := ca.Issue(t, authztest.LeafOptions{CommonName: "127.0.0.1", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).TLS
		return &c
	}
	var serving atomic.Pointer[tls.Certificate]
	serving.Store(serverCert(oldCA))
	next := authztest.NewIssuer(t, "ES256")
	next.KeyID = "next"
	var jwks atomic.Pointer[[]byte]
	first := authztest.JWKS(t, f.Issuer)
	jwks.Store(&first)
	idp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_, _ = w.Write(*jwks.Load())
	}))
	idp.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*serving.Load()}}, nil
	}}
	idp.Config.ErrorLog = log.New(io.Discard, "", 0)
	idp.StartTLS()
	t.Cleanup(idp.Close)
	caFile := filepath.Join(f.Dir, "idp-ca.pem")
	authztest.WriteFile(t, caFile, string(oldCA.PEM()))

	p := f.start(t, `addr: 127.0.0.1:0
policy:
  dir: policies
tokens:
  jwks_persist_dir: "off"
  issuers:
    - issuer: `+issuerPEM+`
      audiences: [`+audience+`]
      algorithms: [ES256]
      jwks_url: `+idp.URL+`
      ca_file: idp-ca.pem
      min_refresh: 1s
      max_refresh: 1s
`, nil)
	viewer := map[string]any{"roles": []string{"viewer"}}
	allowed := func(what, tok string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			if a := p.decideOK(t, mustJSON(t, map[string]any{"token": tok, "action": "orders:read"})); !a.Allow {
				return fmt.Sprintf("%s: denied %v", what, a.Reasons)
			}
			return ""
		})
	}
	keySetError := func(what, want string) {
		t.Helper()
		eventually(t, 10*time.Second, func() string {
			st, raw := status(t, p)
			if len(st.KeySets) != 1 || !strings.Contains(st.KeySets[0].LastError, want) {
				return fmt.Sprintf("%s: /v1/status key set error is not about %q: %s", what, want, raw)
			}
			return ""
		})
	}
	allowed("a token of the provider's key, its CA trusted", f.Issuer.Mint(t, viewer))

	// The provider moves to a new CA and adds a key: refused until the
	// ca_file is rotated, then fetched.
	serving.Store(serverCert(newCA))
	idp.CloseClientConnections() // from now on, connections see the new certificate
	both := []byte(jwksOf(t, f.Issuer, next))
	jwks.Store(&both)
	keySetError("the provider's certificate under a CA not trusted", "certificate")
	writeAtomic(t, caFile, string(newCA.PEM()))
	allowed("a token of the key added once the new CA is trusted", next.Mint(t, viewer))

	// A ca_file without a certificate is refused; the new CA stays.
	const name = "tokens.issuers[0].ca_file"
	writeAtomic(t, caFile, "not a certificate\n")
	eventually(t, 10*time.Second, func() string {
		if e := credentialError(t, p, name); !strings.Contains(e, "no PEM certificates") {
			return fmt.Sprintf("/v1/status last_error %q, want no PEM certificates", e)
		}
		return ""
	})
	time.Sleep(2 * time.Second) // refreshes under the refused file
	if st, raw := status(t, p); len(st.KeySets) != 1 || st.KeySets[0].LastError != "" {
		t.Errorf("the key set stopped refreshing under a refused ca_file: %s", raw)
	}
}
