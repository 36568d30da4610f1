package authz

import (
	"errors"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Why a path is refused. Each reason says what was refused and why, so the
// 400 an enforcement point gets back explains itself.
const (
	refuseFragment       = "a fragment ('#') is not part of a request path"
	refuseMethodParam    = "a _method query parameter is refused (Laravel, Symfony, Spring and Express's method-override run the method it names, not the one decided)"
	refuseParams         = "';' path parameters are refused (servlet containers strip them)"
	refuseBackslash      = "'\\' is refused (WHATWG URL parsers and IIS treat it as '/')"
	refuseControl        = "control characters are refused"
	refuseRawUTF8        = "bytes that are not valid UTF-8 are refused"
	refuseEscape         = "bad percent-escape"
	refuseSlash          = "an encoded '/' is refused (upstreams disagree on whether it separates segments)"
	refuseEncParams      = "an encoded ';' is refused (servlet containers may strip it as a path parameter)"
	refuseEncBackslash   = "an encoded '\\' is refused (WHATWG URL parsers and IIS treat it as '/')"
	refuseEncControl     = "an encoded control character is refused"
	refuseEncUTF8        = "escapes that decode to invalid UTF-8 are refused (e.g. the overlong '.' %C0%AE)"
	refuseDouble         = "a double-encoded escape is refused (an upstream that decodes twice sees another path)"
	refuseEncDot         = "an encoded dot segment is refused (upstreams disagree on whether to resolve it)"
	refuseDotsOnly       = "a segment of only dots and spaces is refused (Windows and Unicode-normalising upstreams reduce it to a dot segment)"
	refuseCompatSep      = "a Unicode compatibility form of '/', '\\', ';', '%', '?' or '#' is refused (Unicode-normalising upstreams turn it into one)"
	refuseDot            = "dot segments ('.', '..') are refused (proxies forward them unresolved, and upstreams resolve them differently, or not at all)"
	refuseLeadingSlashes = "a path starting with '//' is refused (WHATWG URL parsers, Python and Go's url.Parse read what follows as a host)"
	refuseEmptySegment   = "an empty segment ('//') is refused (Tomcat and nginx merge it, chi and Envoy route it as written)"
	refuseAbsolute       = "an absolute URI (scheme://host/path) is refused: give the path (an upstream routes the path alone)"
)

// normalizePath drops a query string (refusing one that overrides the
// method), then returns the decoded path
// and its segments: what the upstream routes, so that a policy comparing
// input.action.path or input.action.segments decides about the resource the
// request will reach. It accepts:
//
//   - a path with or without its leading '/' ("orders/42" is "/orders/42"),
//     but not an absolute URI ("http://host/orders/42": without a leading
//     '/', a first segment holding ':' is a scheme, and is refused);
//   - a trailing slash, kept as a last empty segment ("/users/1/" is
//     segments "users", "1", ""): Go's ServeMux routes "GET /users/{id}/"
//     (a subtree) apart from "GET /users/{id}", and so do other strict
//     routers, while Express (not strict) and Tomcat take them as one, so
//     a policy must be able to tell them apart, and one that denies a
//     path must deny it with and without the slash;
//   - percent-escapes, decoded once per segment ("/%61dmin" is "/admin");
//   - raw non-ASCII bytes when the path is valid UTF-8: a caller that hands
//     over a decoded path (a /v1/decide body, some proxies' X-Forwarded-Uri)
//     means the same bytes an encoded one would.
//
// "/" (and "") has no segments, no segment is ever "." or "..", and only
// the last may be "".
//
// Everything whose meaning differs between common upstreams is refused
// instead of guessed at, with an error that says what and why. Refused:
//
//   - an empty segment other than the last ("/a//b"): Tomcat and nginx (with
//     a URI in proxy_pass) merge it, chi and Envoy without merge_slashes
//     route it as written, and Go's ServeMux redirects to the merged path
//     (which is then decided on its own);
//   - dot segments, raw ("/a/../b", "/a/./b") or encoded: proxies (nginx's
//     proxy_pass without a URI, Caddy, Envoy without normalize_path)
//     forward them unresolved, and an upstream that routes on the raw
//     prefix (Express, chi, Envoy's own routes) reaches "/a" where a
//     resolving decision would have judged "/b". Browsers and HTTP clients
//     resolve dot segments before sending, so real traffic has none;
//   - '#' (a fragment is never part of a request target);
//   - a _method query parameter (any case, encoded or not): Laravel,
//     Symfony, Spring's HiddenHttpMethodFilter and Express's
//     method-override run the method it names instead of the one decided;
//   - ';', literal or %3B: servlet containers (Tomcat, Jetty, Spring) strip
//     ";parameters" from segments before routing, so "/public/..;/admin" and
//     "/admin;x" reach /admin there while others route them as written;
//   - '\', literal or %5C: WHATWG URL parsers and IIS treat it as '/';
//   - control bytes (0x00–0x1F, 0x7F), literal or encoded;
//   - raw bytes that are not valid UTF-8, and escapes that decode to invalid
//     UTF-8 (overlong forms such as %C0%AE for '.', surrogates, truncated
//     sequences): old decoders map overlong forms to ASCII;
//   - a bad escape ('%' not followed by two hex digits, including IIS's %u);
//   - an encoded '/' (%2F): some upstreams split on it, others do not;
//   - double encoding: a decoded segment still holding '%' and two hex
//     digits, or IIS's "%u" and four, as %252e does, since an upstream that
//     decodes twice sees another path;
//   - a segment made only of dots and spaces ("...", ".. ", ". "):
//     Windows (IIS) strips trailing dots and spaces
//     from names; dots and spaces here include every character whose NFKC
//     form is made of them (dots: U+2024, U+2025, U+2026, U+FE19, U+FE30,
//     U+FE52, U+FF0E; spaces: U+00A0, U+2000 to U+200A, U+202F, U+205F,
//     U+3000);
//   - the Unicode compatibility forms of '/' and '\' (U+FF0F, U+FE68,
//     U+FF3C, and U+2100, U+2101, U+2105, U+2106 whose NFKC forms contain a
//     '/'), which a normalising upstream turns into separators, and those
//     of ';', '%', '?' and '#' (compatSeparators), which it turns into a
//     parameter, an escape (IIS's best-fit mapping makes "％2e" "%2e"), a
//     query or a fragment.
//
// Errors say why, never quoting the path: they become deny reasons, which
// reach decision-log records where the path itself may be masked or hashed
// (and whoever sent it has it). normalizePath never panics and is linear
// in the length of p.
func normalizePath(p string) (string, []string, error) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		if methodParam(p[i+1:]) {
			return refusePath(refuseMethodParam)
		}
		p = p[:i]
	}
	escaped, nonASCII := false, false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '%':
			escaped = true
		case c == '#':
			return refusePath(refuseFragment)
		case c == ';':
			return refusePath(refuseParams)
		case c == '\\':
			return refusePath(refuseBackslash)
		case c < 0x20 || c == 0x7f:
			return refusePath(refuseControl)
		case c >= 0x80:
			nonASCII = true
		}
	}
	if nonASCII && !utf8.ValidString(p) {
		return refusePath(refuseRawUTF8)
	}

	if strings.HasPrefix(p, "//") {
		return refusePath(refuseLeadingSlashes)
	}
	rest, verbatim := p, true // verbatim: the cleaned path is p itself
	if strings.HasPrefix(rest, "/") {
		rest = rest[1:]
	} else {
		if first, _, _ := strings.Cut(rest, "/"); strings.IndexByte(first, ':') >= 0 {
			// A relative path's first segment holds no ':' (RFC 3986, 4.2):
			// this is a scheme, and "http://host/admin" is not "/http:/host/admin".
			return refusePath(refuseAbsolute)
		}
		verbatim = false
	}
	if escaped {
		verbatim = false
	}
	if rest == "" {
		return "/", []string{}, nil
	}
	segments := make([]string, 0, strings.Count(rest, "/")+1)
	for done := false; !done; {
		raw := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			raw, rest = rest[:i], rest[i+1:]
		} else {
			done = true
		}
		switch raw {
		case "":
			if !done {
				return refusePath(refuseEmptySegment)
			}
			segments = append(segments, "") // a trailing slash
			continue
		case ".", "..":
			return refusePath(refuseDot)
		}
		seg := raw
		if escaped && strings.IndexByte(raw, '%') >= 0 {
			var err error
			if seg, err = url.PathUnescape(raw); err != nil {
				return refusePath(refuseEscape)
			}
			if reason := checkDecoded(seg); reason != "" {
				return refusePath(reason)
			}
		}
		if reason := checkSegment(seg); reason != "" {
			return refusePath(reason)
		}
		segments = append(segments, seg)
	}
	if verbatim {
		return p, segments, nil
	}
	var b strings.Builder
	b.Grow(len(p) + 1)
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(s)
	}
	return b.String(), segments, nil
}

// checkDecoded returns why a segment that held escapes is refused, or "".
// The raw path has passed the literal checks, so a ';', '\', control byte
// or invalid UTF-8 found here came from an escape.
func checkDecoded(seg string) string {
	nonASCII := false
	for i := 0; i < len(seg); i++ {
		switch c := seg[i]; {
		case c == '/':
			return refuseSlash
		case c == ';':
			return refuseEncParams
		case c == '\\':
			return refuseEncBackslash
		case c < 0x20 || c == 0x7f:
			return refuseEncControl
		case c == '%':
			if doubleEncoded(seg[i+1:]) {
				return refuseDouble
			}
		case c >= 0x80:
			nonASCII = true
		}
	}
	if nonASCII && !utf8.ValidString(seg) {
		return refuseEncUTF8
	}
	if seg == "." || seg == ".." {
		return refuseEncDot
	}
	return ""
}

// doubleEncoded reports whether s, which follows a decoded '%', would decode
// again: two hex digits, or IIS's "u" and four.
func doubleEncoded(s string) bool {
	if len(s) >= 2 && isHex(s[0]) && isHex(s[1]) {
		return true
	}
	if len(s) >= 5 && (s[0] == 'u' || s[0] == 'U') {
		return isHex(s[1]) && isHex(s[2]) && isHex(s[3]) && isHex(s[4])
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// checkSegment returns why a decoded segment, other than a raw "." or "..",
// is refused for what Windows or Unicode normalisation would make of it, or
// "". Most segments hold a letter or digit early, and an ASCII-only rest
// needs no more than a byte scan.
func checkSegment(seg string) string {
	dots := 0
	for i, r := range seg {
		switch r {
		case '.', '\u2024', '\u2025', '\u2026', '\ufe19', '\ufe30', '\ufe52', '\uff0e':
			dots++
		case ' ', '\u00a0', '\u2000', '\u2001', '\u2002', '\u2003', '\u2004', '\u2005', '\u2006', '\u2007',
			'\u2008', '\u2009', '\u200a', '\u202f', '\u205f', '\u3000':
		default:
			return checkCompatSep(seg[i:])
		}
	}
	if dots > 0 {
		return refuseDotsOnly
	}
	return ""
}

// compatSeparators are the characters whose NFKC form holds a '/', '\',
// ';', '%', '?' or '#': what the rules above refuse, or read as a
// separator, a parameter, an escape, a query or a fragment.
const compatSeparators = "\u2100\u2101\u2105\u2106\ufe68\uff0f\uff3c" + // '/' and '\'
	"\u037e\ufe14\ufe54\uff1b" + // ';'
	"\ufe6a\uff05" + // '%'
	"\u2047\u2048\u2049\ufe16\ufe56\uff1f" + // '?'
	"\ufe5f\uff03" // '#'

// checkCompatSep reports a compatibility form of a separator in s.
func checkCompatSep(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			if strings.ContainsAny(s[i:], compatSeparators) {
				return refuseCompatSep
			}
			return ""
		}
	}
	return ""
}

// methodParam reports whether query names a _method parameter (any case,
// percent-encoded or not), which frameworks read to replace the request's
// method, as they read X-HTTP-Method-Override. Pairs are separated by '&'
// or ';' (which some parsers take too), and a name is read as PHP reads it
// (Laravel, Symfony): leading spaces dropped, then ' ', '.' and '[' made
// '_', so ".method" is "_method".
func methodParam(query string) bool {
	for query != "" {
		i := strings.IndexAny(query, "&;")
		pair := query
		if i >= 0 {
			pair, query = query[:i], query[i+1:]
		} else {
			query = ""
		}
		name, _, _ := strings.Cut(pair, "=")
		if d, err := url.QueryUnescape(name); err == nil {
			name = d
		}
		name = phpName.Replace(strings.TrimLeft(name, " "))
		if strings.EqualFold(name, "_method") {
			return true
		}
	}
	return false
}

// phpName turns the characters PHP replaces in a parameter's name into the
// '_' it makes of them.
var phpName = strings.NewReplacer(" ", "_", ".", "_", "[", "_")

// refusePath is normalizePath's error for the reason given.
func refusePath(reason string) (string, []string, error) {
	return "", nil, errors.New("path: " + reason)
}

// PathLogPrefix returns the part of a request path (Action.Path) that a
// log may hold: what precedes its query and any fragment, and, in the
// first segment normalizing the path would refuse for such a byte, what
// precedes the first ';', '#', '%', control or non-ASCII byte in it. What follows such a
// byte may be a session ID or a token (";jsessionid=", "#access_token=",
// their encoded, double-encoded and Unicode-compatibility forms), and the
// request was refused anyway. An accepted path is cut at an encoded '#'
// ("%23") too, which is path data but usually a fragment sent by mistake.
func PathLogPrefix(path string) string {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	for start := 0; start < len(path); {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		seg := path[start:end]
		if _, _, err := normalizePath("/" + seg); err != nil {
			if i := suspectByte(seg); i >= 0 {
				return path[:start+i]
			}
		}
		if i := indexFold(seg, "%23"); i >= 0 {
			return path[:start+i]
		}
		start = end + 1
	}
	return path
}

// suspectByte is the index of the first ';', '#', '%', control or
// non-ASCII byte of seg, or -1 when it has none (a segment refused for its
// dots, say, which hides nothing).
func suspectByte(seg string) int {
	for i := 0; i < len(seg); i++ {
		if c := seg[i]; c == ';' || c == '#' || c == '%' || c < 0x20 || c >= 0x7f {
			return i
		}
	}
	return -1
}

// indexFold is strings.Index for an ASCII sub that ignores case.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
