// Package fwdcert parses the client certificates that proxies forward in
// HTTP headers: Envoy's x-forwarded-client-cert (ParseXFCC) and the
// URL-escaped PEM of nginx's $ssl_client_escaped_cert (ParseEscapedPEM),
// and the PEM chain either yields (ParseChain).
//
// It only parses. Whether a header is read at all, whether its sender is a
// trusted proxy and whether the certificate chains to the trust bundle are
// the server's decisions. Every function is safe for concurrent use; every
// error wraps ErrMalformed.
package fwdcert

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// ErrMalformed is wrapped by every error of this package: the header value
// or the PEM it holds is not a well-formed forwarded certificate.
var ErrMalformed = errors.New("malformed forwarded certificate")

// ErrAmbiguous is an XFCC value of several elements with URI or DNS pairs,
// whose element boundaries a client's certificate can move (see
// ParseXFCC). It wraps ErrMalformed.
var ErrAmbiguous = fmt.Errorf("%w: XFCC elements holding URI or DNS pairs", ErrMalformed)

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
//
// A value of several elements in which any element has a URI or DNS pair
// is refused (ErrAmbiguous): Envoy writes those values as the client's
// certificate holds them, unquoted, so a client whose certificate Envoy
// accepts (from any CA) can put ",Cert=<another service's certificate>"
// in a URI SAN and make that the last element. In one element the same
// trick only adds a second Cert, which is refused.
func ParseXFCC(value string) ([]byte, error) {
	elems, err := splitQuoted(value, ',')
	if err != nil {
		return nil, err
	}
	if len(elems) > 1 {
		for _, e := range elems {
			if hasSANPair(e) {
				return nil, ErrAmbiguous
			}
		}
	}
	last := strings.TrimSpace(elems[len(elems)-1])
	if last == "" {
		return nil, errors.Join(ErrMalformed, errors.New("empty XFCC element"))
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
			return nil, errors.Join(ErrMalformed, errors.New("XFCC pair without '='"))
		}
		v, err := unquote(strings.TrimSpace(v))
		if err != nil {
			return nil, err
		}
		switch {
		case strings.EqualFold(k, "Cert"):
			if haveCert {
				return nil, errors.Join(ErrMalformed, errors.New("XFCC element has more than one Cert"))
			}
			certPEM, haveCert = v, true
		case strings.EqualFold(k, "Chain"):
			if haveChain {
				return nil, errors.Join(ErrMalformed, errors.New("XFCC element has more than one Chain"))
			}
			chainPEM, haveChain = v, true
		}
	}
	if !haveCert || certPEM == "" {
		return nil, errors.Join(ErrMalformed, errors.New("XFCC element has no Cert"))
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

// hasSANPair reports whether the XFCC element e holds a URI or DNS pair
// (outside quotes).
func hasSANPair(e string) bool {
	pairs, err := splitQuoted(e, ';')
	if err != nil {
		return true // unreachable: the whole value's quotes balance
	}
	for _, p := range pairs {
		k, _, _ := strings.Cut(p, "=")
		if k = strings.TrimSpace(k); strings.EqualFold(k, "URI") || strings.EqualFold(k, "DNS") {
			return true
		}
	}
	return false
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
		return nil, errors.Join(ErrMalformed, errors.New("bad percent-encoding"))
	}
	if !strings.Contains(s, "-----BEGIN ") {
		return nil, errors.Join(ErrMalformed, errors.New("not a PEM certificate"))
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
		return nil, errors.Join(ErrMalformed, errors.New("unterminated quote"))
	}
	return append(out, s[start:]), nil
}

// unquote removes the double quotes around v and its backslash escapes.
func unquote(v string) (string, error) {
	if len(v) < 2 || v[0] != '"' {
		if strings.ContainsRune(v, '"') {
			return "", errors.Join(ErrMalformed, errors.New("stray quote in XFCC value"))
		}
		return v, nil
	}
	if v[len(v)-1] != '"' {
		return "", errors.Join(ErrMalformed, errors.New("text after a quoted XFCC value"))
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

// ParseChain parses PEM: the first CERTIFICATE block is the leaf, the others
// intermediates. Non-certificate blocks, more than eight certificates and
// PEM without a certificate are refused. It does not verify the chain:
// that is the caller's decision, against its own trust bundle.
func ParseChain(data []byte) (*x509.Certificate, []*x509.Certificate, error) {
	var leaf *x509.Certificate
	var inter []*x509.Certificate
	for n := 0; ; n++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		if n >= maxChainCerts {
			return nil, nil, errors.Join(ErrMalformed, errors.New("too many certificates"))
		}
		if block.Type != "CERTIFICATE" {
			return nil, nil, errors.Join(ErrMalformed, errors.New("PEM block is not a CERTIFICATE"))
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, nil, errors.Join(ErrMalformed, err)
		}
		if leaf == nil {
			leaf = c
		} else {
			inter = append(inter, c)
		}
	}
	if leaf == nil {
		return nil, nil, errors.Join(ErrMalformed, errors.New("no PEM CERTIFICATE block"))
	}
	return leaf, inter, nil
}
