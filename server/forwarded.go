package server

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/authz"
)

// ErrForwardedCert is wrapped by errors parsing a forwarded certificate.
var ErrForwardedCert = errors.New("forwarded certificate")

// maxChainCerts bounds the certificates in one forwarded chain.
const maxChainCerts = 8

// ParseXFCC extracts the client certificate from an Envoy
// x-forwarded-client-cert header value and returns its PEM (Cert), followed
// by the PEM of the chain (Chain) when the element has one.
//
// The value is a comma-separated list of elements, each a semicolon-separated
// list of key=value pairs (keys case-insensitive: By, Hash, Cert, Chain,
// Subject, URI, DNS); a value holding ',', ';' or '=' is double-quoted, with
// '"' escaped as '\"'; Cert and Chain are URL-encoded PEM. Each proxy
// appends the element describing its own downstream peer at the end, so the
// last element is the one written by the proxy that talks to Verdict — the
// trusted one; earlier elements come from hops further away and are
// ignored. An element without Cert is an error (configure Envoy's
// set_current_client_cert_details with cert: true).
func ParseXFCC(value string) ([]byte, error) {
	elems, err := splitQuoted(value, ',')
	if err != nil {
		return nil, err
	}
	last := strings.TrimSpace(elems[len(elems)-1])
	if last == "" {
		return nil, errors.Join(ErrForwardedCert, errors.New("empty XFCC element"))
	}
	pairs, err := splitQuoted(last, ';')
	if err != nil {
		return nil, err
	}
	var certPEM, chainPEM string
	var haveCert, haveChain bool
	for _, p := range pairs {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok {
			return nil, errors.Join(ErrForwardedCert, errors.New("XFCC pair without '='"))
		}
		v, err := unquote(strings.TrimSpace(v))
		if err != nil {
			return nil, err
		}
		switch {
		case strings.EqualFold(k, "Cert"):
			if haveCert {
				return nil, errors.Join(ErrForwardedCert, errors.New("XFCC element has more than one Cert"))
			}
			certPEM, haveCert = v, true
		case strings.EqualFold(k, "Chain"):
			if haveChain {
				return nil, errors.Join(ErrForwardedCert, errors.New("XFCC element has more than one Chain"))
			}
			chainPEM, haveChain = v, true
		}
	}
	if !haveCert || certPEM == "" {
		return nil, errors.Join(ErrForwardedCert, errors.New("XFCC element has no Cert"))
	}
	out, err := unescapePEM(certPEM)
	if err != nil {
		return nil, err
	}
	if chainPEM != "" {
		chain, err := unescapePEM(chainPEM)
		if err != nil {
			return nil, err
		}
		out = append(append(out, '\n'), chain...)
	}
	return out, nil
}

// ParseEscapedPEM decodes a URL-escaped PEM certificate header value, as
// nginx's $ssl_client_escaped_cert writes it (and Caddy's
// {http.request.tls.client.certificate_pem} when escaped). Further PEM
// blocks after the first are intermediates.
func ParseEscapedPEM(value string) ([]byte, error) {
	return unescapePEM(strings.TrimSpace(value))
}

// unescapePEM percent-decodes v. A '+' stays '+' (a base64 character),
// unless the value is form-encoded — its PEM boundary reads "BEGIN+" because
// spaces became '+' — and then '+' is a space and a literal '+' is %2B.
func unescapePEM(v string) ([]byte, error) {
	unescape := url.PathUnescape
	if strings.Contains(v, "BEGIN+") {
		unescape = url.QueryUnescape
	}
	s, err := unescape(v)
	if err != nil {
		return nil, errors.Join(ErrForwardedCert, errors.New("bad percent-encoding"))
	}
	if !strings.Contains(s, "-----BEGIN ") {
		return nil, errors.Join(ErrForwardedCert, errors.New("not a PEM certificate"))
	}
	return []byte(s), nil
}

// splitQuoted splits s at sep outside double-quoted parts.
func splitQuoted(s string, sep byte) ([]string, error) {
	var out []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, errors.Join(ErrForwardedCert, errors.New("unterminated quote"))
	}
	return append(out, s[start:]), nil
}

// unquote removes the double quotes around v and its backslash escapes.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		if strings.ContainsRune(v, '"') {
			return "", errors.Join(ErrForwardedCert, errors.New("stray quote in XFCC value"))
		}
		return v, nil
	}
	if v[len(v)-1] != '"' {
		return "", errors.Join(ErrForwardedCert, errors.New("text after a quoted XFCC value"))
	}
	v = v[1 : len(v)-1]
	if !strings.ContainsRune(v, '\\') {
		return v, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String(), nil
}

// parseChain parses PEM: the first CERTIFICATE block is the leaf, the others
// intermediates. Non-certificate blocks are refused.
func parseChain(data []byte) (*x509.Certificate, []*x509.Certificate, error) {
	var leaf *x509.Certificate
	var inter []*x509.Certificate
	for n := 0; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if n >= maxChainCerts {
			return nil, nil, errors.Join(ErrForwardedCert, errors.New("too many certificates"))
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, errors.Join(ErrForwardedCert, errors.New("PEM block is not a CERTIFICATE"))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, errors.Join(ErrForwardedCert, err)
		}
		if leaf == nil {
			leaf = c
		} else {
			inter = append(inter, c)
		}
	}
	if leaf == nil {
		return nil, nil, errors.Join(ErrForwardedCert, errors.New("no PEM CERTIFICATE block"))
	}
	return leaf, inter, nil
}

// trustedPeer reports whether the connection comes from a trusted proxy.
func (s *Server) trustedPeer(remoteAddr string) bool {
	if len(s.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	return s.trustedAddr(ap.Addr())
}

// trustedAddr reports whether a is a trusted proxy's address.
func (s *Server) trustedAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range s.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

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
		raw, parse = firstNonEmpty(r.Header[s.xfccHeader]), ParseXFCC
	} else {
		raw, parse = firstNonEmpty(r.Header[s.escHeader]), ParseEscapedPEM
	}
	key := sha256.Sum256([]byte(raw))
	now := s.now()
	if c, ok := s.certs.get(&key, now); ok {
		return authz.Caller{Certificate: c, Forwarded: true}, nil
	}
	pemBytes, err := parse(raw)
	if err != nil {
		return authz.Caller{}, callerRejected("malformed forwarded certificate")
	}
	return s.verifyForwarded(&key, pemBytes, now)
}

// assertedCaller checks the PEM certificate a /v1/decide body names as its
// caller: believed only from a trusted proxy, and only when it chains to
// the trust bundle.
func (s *Server) assertedCaller(r *http.Request, pemBytes []byte) (authz.Caller, error) {
	if !s.trustedPeer(r.RemoteAddr) {
		return authz.Caller{}, callerRejected("a certificate in the request body is accepted only from a trusted proxy")
	}
	key := sha256.Sum256(pemBytes)
	now := s.now()
	if c, ok := s.certs.get(&key, now); ok {
		return authz.Caller{Certificate: c, Forwarded: true}, nil
	}
	return s.verifyForwarded(&key, pemBytes, now)
}

// verifyForwarded parses a forwarded chain and verifies it against the
// trust bundle for client authentication, caching a success under key.
func (s *Server) verifyForwarded(key *[32]byte, pemBytes []byte, now time.Time) (authz.Caller, error) {
	if s.trustBundle == nil {
		return authz.Caller{}, callerRejected("no caller trust bundle is configured")
	}
	leaf, inter, err := parseChain(pemBytes)
	if err != nil {
		return authz.Caller{}, callerRejected("malformed forwarded certificate")
	}
	opts := x509.VerifyOptions{
		Roots:       s.trustBundle,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(inter) > 0 {
		opts.Intermediates = x509.NewCertPool()
		for _, c := range inter {
			opts.Intermediates.AddCert(c)
		}
	}
	if _, err := leaf.Verify(opts); err != nil {
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
	s.certs.put(key, leaf, until)
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
// bounded; when full, an arbitrary entry makes room.
type certCache struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]certEntry
}

type certEntry struct {
	cert  *x509.Certificate
	until time.Time
}

func newCertCache(max int) *certCache {
	return &certCache{max: max, m: make(map[[32]byte]certEntry)}
}

func (c *certCache) get(key *[32]byte, now time.Time) (*x509.Certificate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[*key]
	if !ok {
		return nil, false
	}
	if !now.Before(e.until) || now.Before(e.cert.NotBefore) {
		delete(c.m, *key)
		return nil, false
	}
	return e.cert, true
}

func (c *certCache) put(key *[32]byte, cert *x509.Certificate, until time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[*key] = certEntry{cert: cert, until: until}
}
