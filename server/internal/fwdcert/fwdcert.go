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
// The whole value is read strictly (splitXFCC): a quote opens a value only
// right after its '=' and closes it only right before a ';', a ',' or the
// end, and an unquoted value holds no quote. Otherwise earlier elements,
// which the client writes when the proxy appends (APPEND_FORWARD), could
// leave a quote open that turns the proxy's own pairs into a value.
//
// A value of several elements in which any element has a URI or DNS pair
// is refused (ErrAmbiguous): Envoy writes those values as the client's
// certificate holds them, unquoted, so a client whose certificate Envoy
// accepts (from any CA) can put ",Cert=<another service's certificate>"
// in a URI SAN and make that the last element. In one element the same
// trick only adds a second Cert, which is refused.
func ParseXFCC(value string) ([]byte, error) {
	elems, err := splitXFCC(value)
	if err != nil {
		return nil, err
	}
	if len(elems) > 1 {
		for _, e := range elems {
			for _, p := range e {
				if strings.EqualFold(p.key, "URI") || strings.EqualFold(p.key, "DNS") {
					return nil, ErrAmbiguous
				}
			}
		}
	}
	var certPEM, chainPEM string
	var haveCert, haveChain bool
	for _, p := range elems[len(elems)-1] {
		switch {
		case strings.EqualFold(p.key, "Cert"):
			if haveCert {
				return nil, errors.Join(ErrMalformed, errors.New("XFCC element has more than one Cert"))
			}
			certPEM, haveCert = p.value, true
		case strings.EqualFold(p.key, "Chain"):
			if haveChain {
				return nil, errors.Join(ErrMalformed, errors.New("XFCC element has more than one Chain"))
			}
			chainPEM, haveChain = p.value, true
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

// xfccPair is one key=value pair of an XFCC element, its value unquoted.
type xfccPair struct{ key, value string }

// splitXFCC reads an XFCC value into its elements' pairs, strictly: each
// pair is a key (letters, digits, '-', '_'), '=', and a value that is
// either quoted — '"', any bytes with '\' escaping the next, '"', then a
// ';', a ',' or the end — or unquoted, up to the next ';' or ',' and
// holding no '"'. Spaces and tabs around a pair are skipped. Anything else,
// an empty element included, is an error wrapping ErrMalformed.
func splitXFCC(s string) ([][]xfccPair, error) {
	bad := func(why string) ([][]xfccPair, error) {
		return nil, errors.Join(ErrMalformed, errors.New(why))
	}
	var elems [][]xfccPair
	var pairs []xfccPair
	i := 0
	for {
		i = skipBlanks(s, i)
		k := i
		for i < len(s) && isKeyByte(s[i]) {
			i++
		}
		key := s[k:i]
		switch {
		case key == "" && (i == len(s) || s[i] == ','):
			return bad("empty XFCC element")
		case key == "" || i == len(s) || s[i] != '=':
			return bad("XFCC pair without a key and '='")
		}
		i++ // '='
		var value string
		if i < len(s) && s[i] == '"' {
			var b strings.Builder
			for i++; ; i++ {
				if i == len(s) {
					return bad("unterminated quote")
				}
				c := s[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+1 < len(s) {
					i++
					c = s[i]
				}
				b.WriteByte(c)
			}
			value = b.String()
		} else {
			v := i
			for i < len(s) && s[i] != ';' && s[i] != ',' {
				if s[i] == '"' {
					return bad("stray quote in XFCC value")
				}
				i++
			}
			value = strings.TrimRight(s[v:i], " \t")
		}
		i = skipBlanks(s, i)
		pairs = append(pairs, xfccPair{key, value})
		if i == len(s) {
			return append(elems, pairs), nil
		}
		switch s[i] {
		case ';':
		case ',':
			elems, pairs = append(elems, pairs), nil
		default:
			return bad("text after a quoted XFCC value")
		}
		i++
	}
}

// skipBlanks returns the index of the first byte of s at or after i that
// is not a space or a tab.
func skipBlanks(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
		i++
	}
	return i
}

// isKeyByte reports whether c may be in an XFCC key.
func isKeyByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
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
