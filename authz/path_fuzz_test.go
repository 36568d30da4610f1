package authz

import (
	"bytes"
	"math/rand/v2"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzNormalizePath compares normalizePath with refNormalizePath, a
// reference model written the other way round, and checks what every
// accepted path must satisfy, including that normalising it again (each
// segment re-escaped) changes nothing.
func FuzzNormalizePath(f *testing.F) {
	for _, tc := range acceptedPaths {
		f.Add(tc.in)
	}
	for _, tc := range refusedPaths {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if logged := PathLogPrefix(p); !strings.HasPrefix(p, logged) || strings.ContainsAny(logged, "?#;") {
			t.Fatalf("PathLogPrefix(%q) = %q: not a prefix, or holds a query, fragment or parameter", p, logged)
		}
		got, segments, err := normalizePath(p)
		want, wantSegments, wantOK := refNormalizePath(p)
		if (err == nil) != wantOK {
			t.Fatalf("normalizePath(%q) = %q, %q, %v; reference accepts: %v (%q, %q)", p, got, segments, err, wantOK, want, wantSegments)
		}
		if err != nil {
			if msg := err.Error(); !strings.HasPrefix(msg, "path: ") || len(msg) > 200 || !utf8.ValidString(msg) {
				t.Fatalf("normalizePath(%q) error %q: want \"path: \" and why", p, msg)
			}
			return
		}
		if got != want || !slices.Equal(segments, wantSegments) {
			t.Fatalf("normalizePath(%q) = %q, %q; reference %q, %q", p, got, segments, want, wantSegments)
		}
		checkAccepted(t, p, got, segments)

		escaped := make([]string, len(segments))
		for i, s := range segments {
			escaped[i] = url.PathEscape(s)
		}
		again := "/" + strings.Join(escaped, "/")
		got2, segments2, err := normalizePath(again)
		if err != nil || got2 != got || !slices.Equal(segments2, segments) {
			t.Fatalf("normalizePath(%q) = %q, %q; normalising it re-escaped as %q gives %q, %q, %v", p, got, segments, again, got2, segments2, err)
		}
	})
}

// checkAccepted checks the properties of an accepted path's result.
func checkAccepted(t *testing.T, p, cleaned string, segments []string) {
	t.Helper()
	if segments == nil {
		t.Fatalf("normalizePath(%q): nil segments", p)
	}
	if want := "/" + strings.Join(segments, "/"); cleaned != want {
		t.Fatalf("normalizePath(%q) = %q, want %q from its segments %q", p, cleaned, want, segments)
	}
	if !utf8.ValidString(cleaned) {
		t.Fatalf("normalizePath(%q) = %q: not UTF-8", p, cleaned)
	}
	for i, s := range segments {
		switch {
		case s == "" && i < len(segments)-1:
			t.Fatalf("normalizePath(%q): an empty segment before the last", p)
		case s == "." || s == "..":
			t.Fatalf("normalizePath(%q): segment %q", p, s)
		case strings.ContainsAny(s, ";\\/"), strings.IndexFunc(s, isControl) >= 0:
			t.Fatalf("normalizePath(%q): segment %q holds a separator, parameter or control character", p, s)
		case refEscapeRE.MatchString(s):
			t.Fatalf("normalizePath(%q): segment %q holds an escape", p, s)
		case !utf8.ValidString(s):
			t.Fatalf("normalizePath(%q): segment %q is not UTF-8", p, s)
		}
	}
}

// The reference model's tables, written out from normalizePath's doc
// comment (and Unicode's NFKC data) rather than from its code.
var (
	// refEscapeRE is what a second decoding would decode: %XX or IIS's %uXXXX.
	refEscapeRE = regexp.MustCompile(`%([0-9A-Fa-f]{2}|[uU][0-9A-Fa-f]{4})`)
	// refDotsOnlyRE is a segment of only dots and spaces, once the Unicode
	// compatibility forms of '.' are folded to it.
	refDotsOnlyRE = regexp.MustCompile(`^[. ]*\.[. ]*$`)
	// Every character whose NFKC form is only dots, or a space (from
	// Unicode's data, with Python's unicodedata).
	refFoldDots = strings.NewReplacer("\u2024", ".", "\u2025", "..", "\u2026", "...", "\ufe19", "...", "\ufe30", "..", "\ufe52", ".", "\uff0e", ".",
		"\u00a0", " ", "\u2000", " ", "\u2001", " ", "\u2002", " ", "\u2003", " ", "\u2004", " ", "\u2005", " ", "\u2006", " ",
		"\u2007", " ", "\u2008", " ", "\u2009", " ", "\u200a", " ", "\u202f", " ", "\u205f", " ", "\u3000", " ")
)

// refCompatSeparators: FULLWIDTH SOLIDUS, FULLWIDTH REVERSE SOLIDUS, SMALL
// REVERSE SOLIDUS, and ACCOUNT OF, ADDRESSED TO THE SUBJECT, CARE OF, CADA
// UNA (NFKC "a/c", "a/s", "c/o", "c/u"); GREEK QUESTION MARK (NFKC ';'),
// PRESENTATION FORM FOR VERTICAL SEMICOLON, SMALL and FULLWIDTH SEMICOLON;
// SMALL and FULLWIDTH PERCENT SIGN; DOUBLE QUESTION MARK, QUESTION
// EXCLAMATION MARK, EXCLAMATION QUESTION MARK, PRESENTATION FORM FOR
// VERTICAL QUESTION MARK, SMALL and FULLWIDTH QUESTION MARK; SMALL and
// FULLWIDTH NUMBER SIGN (every character whose NFKC form holds one of
// / \ ; %% ? #, by Python's unicodedata).
const refCompatSeparators = "\uff0f\uff3c\ufe68\u2100\u2101\u2105\u2106" +
	"\u037e\ufe14\ufe54\uff1b\ufe6a\uff05\u2047\u2048\u2049\ufe16\ufe56\uff1f\ufe5f\uff03"

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// refNormalizePath is the reference model of normalizePath, written to be
// obviously right rather than fast: literal checks on the whole path, then
// every segment decoded by hand and checked, then RFC 3986 §5.2.4
// remove_dot_segments run as specified (input and output buffers), then
// a trailing empty segment kept. ok is false when the path is refused.
// refMethodParam reports whether query names a _method parameter, pairs
// split at '&' and ';', each name decoded and read as PHP reads it (leading
// spaces dropped, then ' ', '.' and '[' as '_').
func refMethodParam(query string) bool {
	for _, kv := range strings.FieldsFunc(query, func(r rune) bool { return r == '&' || r == ';' }) {
		k := kv
		if i := strings.IndexByte(kv, '='); i >= 0 {
			k = kv[:i]
		}
		if u, err := url.QueryUnescape(k); err == nil {
			k = u
		}
		k = strings.TrimLeft(k, " ")
		k = strings.Map(func(r rune) rune {
			if r == ' ' || r == '.' || r == '[' {
				return '_'
			}
			return r
		}, k)
		if strings.EqualFold(k, "_method") {
			return true
		}
	}
	return false
}

func refNormalizePath(target string) (cleaned string, segments []string, ok bool) {
	p, query, _ := strings.Cut(target, "?")
	if refMethodParam(query) {
		return "", nil, false
	}
	if strings.Contains(p, "#") || strings.ContainsAny(p, ";\\") || strings.IndexFunc(p, isControl) >= 0 || !utf8.ValidString(p) {
		return "", nil, false
	}
	if strings.HasPrefix(p, "//") { // a host to WHATWG URL parsers
		return "", nil, false
	}
	if !strings.HasPrefix(p, "/") {
		if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ":") { // a scheme
			return "", nil, false
		}
		p = "/" + p
	}
	raws := strings.Split(p[1:], "/")
	for i, raw := range raws {
		if raw == "" && i < len(raws)-1 {
			return "", nil, false // only the last segment may be empty: a trailing slash
		}
		if raw == "." || raw == ".." {
			return "", nil, false // dot segments are refused, not resolved
		}
		seg, ok := refDecode(raw)
		switch {
		case !ok,
			strings.ContainsAny(seg, "/;\\"+refCompatSeparators),
			strings.IndexFunc(seg, isControl) >= 0,
			!utf8.ValidString(seg),
			refEscapeRE.MatchString(seg),
			refDotsOnlyRE.MatchString(refFoldDots.Replace(seg)):
			return "", nil, false
		}
	}
	resolved, removedEmpty := refRemoveDotSegments(p)
	if removedEmpty {
		return "", nil, false
	}
	segments = []string{}
	if resolved != "/" {
		for _, raw := range strings.Split(resolved[1:], "/") {
			seg, _ := refDecode(raw)
			segments = append(segments, seg)
		}
	}
	return "/" + strings.Join(segments, "/"), segments, true
}

// refDecode percent-decodes s byte by byte; ok is false for a '%' without
// two hex digits after it.
func refDecode(s string) (string, bool) {
	var out []byte
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			out = append(out, s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", false
		}
		// With base 16, ParseUint takes only hex digits: no sign, prefix
		// or underscore.
		b, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", false
		}
		out = append(out, byte(b))
		i += 2
	}
	return string(out), true
}

// refRemoveDotSegments is RFC 3986 §5.2.4, rule by rule. Where a rule
// replaces a prefix such as "/./" with "/", the input is sliced to keep that
// prefix's last '/' instead, which is the same string without the copy.
// removedEmpty says whether a ".." removed an empty segment: where RFC 3986
// and upstreams that merge slashes before resolving dots disagree.
func refRemoveDotSegments(in string) (string, bool) {
	var out []byte
	removedEmpty := false
	removeLast := func() {
		i := bytes.LastIndexByte(out, '/')
		if i < 0 {
			out = out[:0]
			return
		}
		if i == len(out)-1 {
			removedEmpty = true
		}
		out = out[:i]
	}
	for in != "" {
		switch {
		case strings.HasPrefix(in, "../"): // A
			in = in[3:]
		case strings.HasPrefix(in, "./"): // A
			in = in[2:]
		case strings.HasPrefix(in, "/./"): // B: "/./" becomes "/"
			in = in[2:]
		case in == "/.": // B
			in = "/"
		case strings.HasPrefix(in, "/../"): // C: "/../" becomes "/"
			in = in[3:]
			removeLast()
		case in == "/..": // C
			in = "/"
			removeLast()
		case in == "." || in == "..": // D
			in = ""
		default: // E: the first segment, with its leading '/' if any
			n := 0
			if in[0] == '/' {
				n = 1
			}
			if i := strings.IndexByte(in[n:], '/'); i >= 0 {
				n += i
			} else {
				n = len(in)
			}
			out = append(out, in[:n]...)
			in = in[n:]
		}
	}
	return string(out), removedEmpty
}

// pathTokens are the pieces TestNormalizePathMatchesReference builds paths
// from, which random bytes rarely hit together: every character and escape
// the rules are about, and, separately, the pieces of accepted paths, so
// that dot segments, empty segments and escapes meet often.
var pathTokens = map[string][]string{
	"every rule": {
		"/", "/", "/", ".", ".", "..", "a", "b", "%2e", "%2E", "%25", "%2f", "%3B", "%5c",
		"%C0", "%AE", "%c3", "%a9", "%00", "%0a", "%7f", "%u002e", "%", "2", "e", "E", "u",
		";", "\\", " ", "%20", "?", "#", "é", "．", "‥", "／", "\xc0", "\x00", "\t", "%EF%BC%8E",
	},
	"accepted shapes": {"/", "/", "/", ".", ".", "..", "a", "b", "%2e", "%25", "%41", " ", "é", "．", "?"},
}

// TestNormalizePathMatchesReference compares normalizePath with the
// reference model on paths assembled from pathTokens, deterministically.
func TestNormalizePathMatchesReference(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for name, tokens := range pathTokens {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			var b strings.Builder
			for range n {
				b.Reset()
				for range 1 + r.IntN(14) {
					b.WriteString(tokens[r.IntN(len(tokens))])
				}
				p := b.String()
				got, segments, err := normalizePath(p)
				want, wantSegments, ok := refNormalizePath(p)
				if (err == nil) != ok || got != want || !slices.Equal(segments, wantSegments) {
					t.Fatalf("normalizePath(%q) = %q, %q, %v; reference %q, %q, accepts: %v", p, got, segments, err, want, wantSegments, ok)
				}
				if err == nil {
					checkAccepted(t, p, got, segments)
				}
			}
		})
	}
}
