package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLS is the listeners' TLS configuration, whose certificate and client
// CAs can be replaced while serving (Set), as when a certificate manager
// rotates them: every handshake after Set uses the new ones. TLS 1.2 or
// later. A client certificate is verified against the client CAs whenever
// one is presented, so that a peer certificate reaching the engine as
// caller has a verified chain; and a connection opened before a Set has
// its certificate verified again, under the client CAs then in service,
// before it is believed (a CA rotated out stops counting on connections
// already open too). It is safe for concurrent use.
type TLS struct {
	clientAuth tls.ClientAuthType
	setMu      sync.Mutex // one Set at a time: generations are numbered
	current    atomic.Pointer[tlsGeneration]

	checkedMu sync.Mutex // guards checked
	checked   map[*x509.Certificate]chainVerdict
}

// tlsGeneration is what one Set put in service.
type tlsGeneration struct {
	n      uint64 // Sets before and including this one
	config *tls.Config

	mu     sync.Mutex
	byALPN map[string]*tls.Config // config offering these protocols, by ALPN list
}

// NewTLS returns a TLS for clientAuth: "" (no client certificates),
// "request" (verified when given) or "require" (a verified client
// certificate is required). It holds no certificate: Set must succeed
// before a listener serves with it.
func NewTLS(clientAuth string) (*TLS, error) {
	t := &TLS{}
	switch clientAuth {
	case "":
		t.clientAuth = tls.NoClientCert
	case "request":
		t.clientAuth = tls.VerifyClientCertIfGiven
	case "require":
		t.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("%w: client auth %q: want request or require", ErrOptions, clientAuth)
	}
	return t, nil
}

// ClientCAs reports whether Set needs client CAs.
func (t *TLS) ClientCAs() bool { return t.clientAuth != tls.NoClientCert }

// Set puts cert (the server's certificate chain and key, as
// tls.X509KeyPair returns it) and clientCAs in service. clientCAs is
// required when client certificates are asked for, and ignored otherwise.
// On error nothing changes.
func (t *TLS) Set(cert tls.Certificate, clientCAs *x509.CertPool) error {
	if len(cert.Certificate) == 0 || cert.PrivateKey == nil {
		return errors.New("server: tls: no certificate and key")
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   t.clientAuth,
	}
	if t.ClientCAs() {
		if clientCAs == nil {
			return errors.New("server: tls: client certificates are asked for, but no client CAs are given")
		}
		cfg.ClientCAs = clientCAs
	}
	t.setMu.Lock()
	defer t.setMu.Unlock()
	var n uint64
	if old := t.current.Load(); old != nil {
		n = old.n
	}
	t.current.Store(&tlsGeneration{n: n + 1, config: cfg})
	return nil
}

// config returns the configuration a listener offering protos by ALPN
// serves with: each handshake takes the certificate and client CAs set
// last. (An http.Server adds its protocols to the configuration it is
// given, but a handshake uses the one GetConfigForClient returns.)
func (t *TLS) config(protos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			g := t.current.Load()
			if g == nil {
				return nil, errors.New("server: tls: no certificate set")
			}
			return g.withALPN(protos), nil
		},
	}
}

// withALPN returns g's configuration offering protos, made once.
func (g *tlsGeneration) withALPN(protos []string) *tls.Config {
	if len(protos) == 0 {
		return g.config
	}
	key := strings.Join(protos, ",")
	g.mu.Lock()
	defer g.mu.Unlock()
	c := g.byALPN[key]
	if c == nil {
		c = g.config.Clone()
		c.NextProtos = protos
		if g.byALPN == nil {
			g.byALPN = map[string]*tls.Config{}
		}
		g.byALPN[key] = c
	}
	return c
}

// connTLS is what a connection's context holds: the generation in service
// when it was accepted, and the last verification of its peer under a
// later one.
type connTLS struct {
	accepted uint64
	mu       sync.Mutex
	checked  *tlsGeneration
	ok       bool
}

type connTLSKey struct{}

// connContext is an http.Server's ConnContext: it notes the generation in
// service when the connection was accepted.
func (t *TLS) connContext(ctx context.Context) context.Context {
	var n uint64
	if g := t.current.Load(); g != nil {
		n = g.n
	}
	return context.WithValue(ctx, connTLSKey{}, &connTLS{accepted: n})
}

// peerStillVerified reports whether the verified client certificate of r's
// connection is still good under the client CAs in service: at once when
// nothing was Set since the connection was accepted (its handshake used
// them), otherwise by verifying its chain again, once a connection and
// generation. A connection that Run did not accept (Handler served by
// another http.Server, with its own TLS) is that server's to judge.
func (t *TLS) peerStillVerified(r *http.Request) bool {
	g := t.current.Load()
	if g == nil || r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	c, _ := r.Context().Value(connTLSKey{}).(*connTLS)
	if c == nil {
		return true
	}
	if c.accepted == g.n {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked != g {
		c.checked, c.ok = g, verifyClient(r.TLS.PeerCertificates, g.config.ClientCAs)
	}
	return c.ok
}

// chainStillVerified is peerStillVerified for connections whose context
// holds nothing of theirs (gRPC's): whether chain, a connection's verified
// client certificate chain, verifies under the client CAs in service,
// remembered by its leaf (the same object for every call on a
// connection) and generation, for at most maxChecked leaves.
func (t *TLS) chainStillVerified(chain []*x509.Certificate) bool {
	g := t.current.Load()
	if g == nil || len(chain) == 0 {
		return false
	}
	if g.n == 1 {
		return true // nothing was Set since the first: every handshake used it
	}
	t.checkedMu.Lock()
	defer t.checkedMu.Unlock()
	if v, ok := t.checked[chain[0]]; ok && v.gen == g {
		return v.ok
	}
	if t.checked == nil || len(t.checked) >= maxChecked {
		t.checked = map[*x509.Certificate]chainVerdict{}
	}
	ok := verifyClient(chain, g.config.ClientCAs)
	t.checked[chain[0]] = chainVerdict{gen: g, ok: ok}
	return ok
}

// maxChecked bounds the leaves chainStillVerified remembers; past it, it
// starts again (one verification more a connection).
const maxChecked = 4096

type chainVerdict struct {
	gen *tlsGeneration
	ok  bool
}

// verifyClient reports whether a connection's client certificate chain
// (leaf first) still verifies under roots, now.
func verifyClient(chain []*x509.Certificate, roots *x509.CertPool) bool {
	return roots != nil && verifyClientChain(chain[0], chain[1:], roots, time.Now()) == nil
}

// verifyClientChain verifies leaf, with the intermediates its sender gave,
// for client authentication under roots at now, as a TLS handshake does:
// the one check of a client certificate, whether it came on a connection
// or forwarded by a proxy.
func verifyClientChain(leaf *x509.Certificate, intermediates []*x509.Certificate, roots *x509.CertPool, now time.Time) error {
	opts := x509.VerifyOptions{Roots: roots, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if len(intermediates) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range intermediates {
			opts.Intermediates.AddCert(c)
		}
	}
	_, err := leaf.Verify(opts)
	return err
}

// CertPool reads PEM CA certificates into a pool. Data without any
// certificate is an error.
func CertPool(pemCerts []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCerts) {
		return nil, errors.New("no PEM certificates found")
	}
	return pool, nil
}

// peerStillTrusted checks, before any route runs, that the verified client
// certificate of r's connection still verifies under the client CAs in
// service (see TLS), and reports whether the request may go on. A request
// on a connection whose certificate no longer does is refused (403) and
// the connection told to close (HTTP/2: GOAWAY), as a new connection
// presenting that certificate fails its handshake, under client_auth
// request as under require (a certificate given must verify).
func (s *Server) peerStillTrusted(w http.ResponseWriter, r *http.Request) bool {
	if s.tls == nil || r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || s.tls.peerStillVerified(r) {
		return true
	}
	w.Header().Set("Connection", "close")
	s.fail(w, frontErr(errForbidden, "the client certificate no longer verifies under the client CAs in service: connect again"))
	return false
}
