// Package httpreq reads what an HTTP request says about itself — its bearer
// token (RFC 6750) and its request ID — for the engine's HTTP helpers and
// the Go client, which must not depend on the engine, so that both accept
// and refuse the same headers.
package httpreq

import (
	"errors"
	"net/http"
	"strings"
)

// Errors of BearerToken. Each is a malformed header: a credential the client
// tried to send, which is refused rather than dropped.
var (
	ErrRepeated  = errors.New("more than one Authorization header")
	ErrScheme    = errors.New("authorization scheme is not Bearer")
	ErrMalformed = errors.New("bearer token is empty or contains whitespace")
)

// BearerToken returns the bearer token of h. No Authorization header means no
// token ("" and no error). A header that is present but is not exactly one
// well-formed "Bearer <token>" (scheme case-insensitive) is an error.
func BearerToken(h http.Header) (string, error) {
	values := h.Values("Authorization")
	switch len(values) {
	case 0:
		return "", nil
	case 1:
	default:
		return "", ErrRepeated
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", ErrScheme
	}
	tok = strings.TrimLeft(tok, " ")
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", ErrMalformed
	}
	return tok, nil
}

// MaxRequestIDBytes bounds a client-supplied request ID.
const MaxRequestIDBytes = 128

// RequestID returns the request's X-Request-Id when it is present, at most
// MaxRequestIDBytes long and printable ASCII without spaces; otherwise "".
// A request ID ends up in logs and in the input document, so anything else
// is dropped rather than escaped.
func RequestID(h http.Header) string {
	id := h.Get("X-Request-Id")
	if id == "" || len(id) > MaxRequestIDBytes {
		return ""
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return ""
		}
	}
	return id
}
