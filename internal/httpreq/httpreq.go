// Package httpreq reads what an HTTP request says about itself — its bearer
// token (RFC 6750) and its request ID — and runs the net/http middleware,
// for the engine's HTTP helpers and the Go client, which must not depend on
// the engine, so that both accept and refuse the same headers and gate
// requests the same way.
package httpreq

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
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

// ClientAddr returns the IP address remoteAddr names, alone or with a port
// as http.Request.RemoteAddr has it ("10.0.0.7:51234", "[2001:db8::1]:443"),
// in the one form input.context.remote_addr takes: no port, an IPv4-mapped
// IPv6 address as IPv4, no zone. An empty remoteAddr is none ("", true);
// anything else that is not an address (a Unix socket's "@") is ("", false).
func ClientAddr(remoteAddr string) (string, bool) {
	if remoteAddr == "" {
		return "", true
	}
	a, err := netip.ParseAddr(remoteAddr)
	if err == nil && a.Is4() {
		return remoteAddr, true // dotted decimal parses only as written
	}
	if err != nil {
		ap, perr := netip.ParseAddrPort(remoteAddr)
		if perr != nil {
			return "", false
		}
		a = ap.Addr()
	}
	return a.Unmap().WithZone("").String(), true
}

// MaxRequestIDBytes bounds a client-supplied request ID.
const MaxRequestIDBytes = 128

// RequestID returns the request's X-Request-Id when it is present, at most
// MaxRequestIDBytes long and printable ASCII without spaces; otherwise "".
// A request ID ends up in logs and in the input document, so anything else
// is dropped rather than escaped.
func RequestID(h http.Header) string {
	if id := h.Get("X-Request-Id"); ValidRequestID(id) {
		return id
	}
	return ""
}

// WWWAuthenticate is the WWW-Authenticate value of a 401 answer (RFC 6750):
// `Bearer error="invalid_token"` when a token was presented and refused,
// plain `Bearer` when none was presented. The engine's middleware and the
// client's answer alike.
func WWWAuthenticate(tokenRefused bool) string {
	if tokenRefused {
		return `Bearer error="invalid_token"`
	}
	return "Bearer"
}

// ValidRequestID reports whether id may stand as a request ID wherever it
// comes from: present, at most MaxRequestIDBytes long, and printable ASCII
// without spaces.
func ValidRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// Middleware is the net/http middleware of the engine and of the client:
// ask builds the question for a request and answers it (allow reports the
// answer's verdict; an error, or a question it could not build, is not an
// allow). Allowed requests go on to next with the answer in their context
// under key; everything else is answered by deny and never reaches next.
func Middleware[D any](key any, ask func(r *http.Request) (d D, allow bool, err error),
	deny func(w http.ResponseWriter, r *http.Request, d D, err error)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, allow, err := ask(r)
			if err != nil || !allow {
				deny(w, r, d, err)
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), key, d)))
		})
	}
}

// Describe applies a middleware's callbacks to r: the action is what
// action gives (own when action is nil), with the method and path it
// leaves empty (fields points at them) taken from own; the resource is
// what resource gives (none when it is nil).
func Describe[A any](r *http.Request, own A, fields func(*A) (method, path *string),
	action func(*http.Request) A, resource func(*http.Request) map[string]any) (A, map[string]any) {
	a := own
	if action != nil {
		a = action(r)
		m, p := fields(&a)
		ownM, ownP := fields(&own)
		*m, *p = cmp.Or(*m, *ownM), cmp.Or(*p, *ownP)
	}
	var res map[string]any
	if resource != nil {
		res = resource(r)
	}
	return a, res
}

// overrideHeaders are the headers some frameworks read to replace a
// request's method (Express's method-override, Rails, Spring's
// HiddenHttpMethodFilter for forms: X-HTTP-Method-Override and kin) or its
// path (Symfony behind trusted proxies, IIS URL Rewrite: X-Original-URL,
// X-Rewrite-URL; not nginx's X-Original-URI, which the proxy sets). Never
// modified: Override reads it on every request without allocating.
var overrideHeaders = [...]string{"X-Http-Method-Override", "X-Http-Method", "X-Method-Override", "X-Original-Url", "X-Rewrite-Url"}

// OverrideHeaders returns a copy of the override headers' names (see
// Override).
func OverrideHeaders() []string { return slices.Clone(overrideHeaders[:]) }

// Override returns the name of an override header in h (OverrideHeaders,
// also written with '_', '.' or any other byte but a letter or digit for
// '-': CGI-style upstreams read '_' as the same variable, PHP reads '.' as
// '_' in $_SERVER, and lighttpd writes every other byte as '_'), or "": an
// upstream that honours it would run another method, or serve another
// path, than the one decided.
func Override(h http.Header) string {
	for name, values := range h {
		if len(values) > 0 && IsOverride(name) {
			return name
		}
	}
	return ""
}

// IsOverride reports whether name is an override header's (see Override),
// in any case and with any separator for '-'.
func IsOverride(name string) bool {
	for _, o := range overrideHeaders {
		if SameName(name, o) {
			return true
		}
	}
	return false
}

// NameHasPrefix reports whether header name starts with prefix (a name of
// letters, digits and '-') as a CGI-style upstream reads it: case ignored,
// and every byte that is not an ASCII letter or digit read as '-' (such an
// upstream writes '-' as '_', PHP reads '.' as '_' too, and lighttpd
// writes every other byte as '_'), so that X_Verdict_Roles and
// X.Verdict.Roles start with x-verdict-. It allocates nothing: it runs on
// every header of a request.
func NameHasPrefix(name, prefix string) bool {
	if len(name) < len(prefix) {
		return false
	}
	for i := range len(prefix) {
		if cgiFold(name[i]) != cgiFold(prefix[i]) {
			return false
		}
	}
	return true
}

// SameName reports whether header names a and b are one name as a
// CGI-style upstream reads them (NameHasPrefix, and the same length):
// X_User_Id and X.User.Id are x-user-id. It allocates nothing.
func SameName(a, b string) bool { return len(a) == len(b) && NameHasPrefix(a, b) }

// cgiFold is c as a CGI-style name compares it: lowercase, and '-' for
// every byte that is not an ASCII letter or digit.
func cgiFold(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c + 'a' - 'A'
	case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		return c
	}
	return '-'
}

// OverrideRefused is the text of the refusal of override header name.
func OverrideRefused(name string) string {
	return "header " + name + " is refused: an upstream that honours it would run another method, or serve another path, than the one decided"
}

// Target is the request's path and query exactly as the client wrote them:
// net/url re-encodes a path holding a byte it does not leave escaped ('|',
// '{', raw UTF-8), and then returns %2F decoded as a '/' from EscapedPath,
// a separator the upstream, which gets the raw path, does not see. The
// query stays, so that a _method parameter in it is seen. A target that is
// not in origin form is read as net/url reads a request's: the query from
// the first '?', then, after a scheme, an authority only when "//" follows
// it (http://host/path); the path is what is left, and "/" when nothing is
// (http://host?x=/admin is served as "/", never as the '/' in its query;
// x:/admin/://h/public as /admin/://h/public). A request made in the
// process, not read by a server (no RequestURI), gives its URL's.
func Target(r *http.Request) string {
	t := r.RequestURI
	if t == "" {
		if r.URL == nil {
			return ""
		}
		return r.URL.RequestURI()
	}
	if strings.HasPrefix(t, "/") {
		return t
	}
	rest, ok := cutScheme(t)
	if !ok {
		return r.URL.EscapedPath() // the asterisk form of OPTIONS *
	}
	path, query, hasQuery := strings.Cut(rest, "?")
	switch {
	case strings.HasPrefix(path, "//"):
		if i := strings.IndexByte(path[2:], '/'); i >= 0 {
			path = path[2+i:]
		} else {
			path = ""
		}
	case !strings.HasPrefix(path, "/"):
		path = "" // opaque (scheme:text): the handler's path is empty
	}
	if path == "" {
		path = "/"
	}
	if hasQuery {
		return path + "?" + query
	}
	return path
}

// cutScheme returns what follows the scheme of an absolute URI (a letter,
// then letters, digits, '+', '-' or '.', then ':'), and false when t has
// none, as net/url finds one.
func cutScheme(t string) (string, bool) {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.':
			if i == 0 {
				return "", false
			}
		case c == ':':
			return t[i+1:], i > 0
		default:
			return "", false
		}
	}
	return "", false
}

// Undecidable says why the path of r cannot be decided as the handler will
// serve it, or "": a CONNECT request in authority form names a host, not a
// path (net/http hands its handler a URL the decision never saw); an opaque
// target (x:admin/secret) is served as "/" by a mux but forwarded as written
// by a reverse proxy. A CONNECT with a path (HTTP/2's extended CONNECT,
// net/rpc's) is decided on its path.
func Undecidable(r *http.Request) string {
	if r.Method == http.MethodConnect && !strings.HasPrefix(r.RequestURI, "/") {
		return "a CONNECT request for a host has no path to decide"
	}
	if r.URL != nil && r.URL.Opaque != "" {
		return "an opaque request target (scheme:text) has no path to decide"
	}
	return ""
}
