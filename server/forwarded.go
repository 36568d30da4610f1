package server

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/server/internal/fwdcert"
)

// trustedPeer reports whether the connection comes from a trusted proxy.
func (s *Server) trustedPeer(remoteAddr string) bool { return peerIn(s.trusted, remoteAddr) }

// trustedAddr reports whether a is a trusted proxy's address.
func (s *Server) trustedAddr(a netip.Addr) bool { return addrIn(s.trusted, a) }

// forwardedCaller returns the caller of a forward-auth request: the
// certificate a trusted proxy forwarded in the configured XFCC or
// escaped-PEM header, else none. Only the headers the configuration names
// are read: with neither configured, a certificate header is just another
// client header and is ignored. The connection's own mTLS peer is not the
// caller here: the peer of a forward-auth request is the proxy, and taking
// its identity would hand it to every client the proxy serves. A configured
// header from an untrusted peer, a malformed one, one that does not chain
// to the trust bundle, or more than one, is refused (authz.ErrCaller).
func (s *Server) forwardedCaller(r *http.Request) (authz.Caller, error) {
	var xfcc, esc int
	if s.xfccHeader != "" {
		xfcc = nonEmpty(r.Header[s.xfccHeader])
	}
	if s.escHeader != "" {
		esc = nonEmpty(r.Header[s.escHeader])
	}
	if xfcc+esc == 0 {
		return authz.Caller{}, nil
	}
	if !s.trustedPeer(r.RemoteAddr) {
		return authz.Caller{}, callerRejected("forwarded certificate header from an untrusted peer")
	}
	if xfcc+esc > 1 {
		return authz.Caller{}, callerRejected("more than one forwarded certificate header")
	}
	var raw string
	var parse func(string) ([]byte, error)
	if xfcc == 1 {
		raw, parse = firstNonEmpty(r.Header[s.xfccHeader]), fwdcert.ParseXFCC
	} else {
		raw, parse = firstNonEmpty(r.Header[s.escHeader]), fwdcert.ParseEscapedPEM
	}
	key := sha256.Sum256([]byte(raw))
	now, roots := s.now(), s.trustBundle()
	if c, ok := s.certs.get(&key, now, roots); ok {
		return authz.Caller{Certificate: c, Forwarded: true}, nil
	}
	pemBytes, err := parse(raw)
	if errors.Is(err, fwdcert.ErrAmbiguous) {
		return authz.Caller{}, callerRejected("forwarded certificate header ambiguous: several XFCC elements, with URI or DNS pairs " +
			"(a client certificate's SAN can add an element): have the proxy send Cert only, or overwrite the header")
	}
	if err != nil {
		return authz.Caller{}, callerRejected("malformed forwarded certificate")
	}
	return s.verifyForwarded(&key, pemBytes, now, roots)
}

// assertedCaller checks the PEM certificate a /v1/decide body names as its
// caller: believed only from a trusted proxy, and only when it chains to
// the trust bundle.
func (s *Server) assertedCaller(r *http.Request, pemBytes []byte) (authz.Caller, error) {
	if !s.trustedPeer(r.RemoteAddr) {
		return authz.Caller{}, callerRejected("a certificate in the request body is accepted only from a trusted proxy")
	}
	key := sha256.Sum256(pemBytes)
	now, roots := s.now(), s.trustBundle()
	if c, ok := s.certs.get(&key, now, roots); ok {
		return authz.Caller{Certificate: c, Forwarded: true}, nil
	}
	return s.verifyForwarded(&key, pemBytes, now, roots)
}

// trustBundle returns the trust bundle in service now (nil: none).
func (s *Server) trustBundle() *x509.CertPool {
	if s.trustBundleFunc == nil {
		return nil
	}
	return s.trustBundleFunc()
}

// verifyForwarded parses a forwarded chain and verifies it against roots,
// the trust bundle, for client authentication, caching a success under key
// for as long as roots stay in service.
func (s *Server) verifyForwarded(key *[32]byte, pemBytes []byte, now time.Time, roots *x509.CertPool) (authz.Caller, error) {
	if roots == nil {
		return authz.Caller{}, callerRejected("no caller trust bundle is configured")
	}
	leaf, inter, err := fwdcert.ParseChain(pemBytes)
	if err != nil {
		return authz.Caller{}, callerRejected("malformed forwarded certificate")
	}
	if err := verifyClientChain(leaf, inter, roots, now); err != nil {
		var ie x509.CertificateInvalidError
		if errors.As(err, &ie) && ie.Reason == x509.Expired {
			return authz.Caller{}, callerRejected("forwarded certificate is expired or not yet valid")
		}
		return authz.Caller{}, callerRejected("forwarded certificate does not chain to the trust bundle for client authentication")
	}
	until := now.Add(certCacheTTL)
	if leaf.NotAfter.Before(until) {
		until = leaf.NotAfter
	}
	s.certs.put(key, leaf, until, roots)
	return authz.Caller{Certificate: leaf, Forwarded: true}, nil
}

func nonEmpty(vs []string) int {
	n := 0
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			n++
		}
	}
	return n
}

func firstNonEmpty(vs []string) string {
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

// certCache remembers verified forwarded certificates by a hash of the
// header (or body) bytes they came in, so that a proxy forwarding the same
// client certificate again costs a hash, not a chain verification. It is
// bounded; when full, an arbitrary entry makes room. An entry holds only
// under the trust bundle it was verified with: a replaced bundle (a CA
// rotated out) verifies every certificate again.
type certCache struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]certEntry
}

type certEntry struct {
	cert  *x509.Certificate
	until time.Time
	roots *x509.CertPool
}

func newCertCache(max int) *certCache {
	return &certCache{max: max, m: make(map[[32]byte]certEntry)}
}

func (c *certCache) get(key *[32]byte, now time.Time, roots *x509.CertPool) (*x509.Certificate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[*key]
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) || now.Before(e.cert.NotBefore) || e.roots != roots {
		delete(c.m, *key)
		return nil, false
	}
	return e.cert, true
}

func (c *certCache) put(key *[32]byte, cert *x509.Certificate, until time.Time, roots *x509.CertPool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[*key] = certEntry{cert: cert, until: until, roots: roots}
}
