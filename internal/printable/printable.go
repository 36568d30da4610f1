// Package printable makes text from outside safe to print on a terminal,
// and in a log: escaped, and cut to a bound.
package printable

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// String returns s with its control characters other than tab, its format
// characters (bidirectional overrides such as U+202E, zero-width ones), its
// line and paragraph separators and its bytes that are not UTF-8 (a lone
// 0x9B is a control sequence to an 8-bit terminal) written as Go escapes,
// and s itself when it has none: printed, such a string cannot move a
// terminal's cursor, change its colours, forge a line of its own or show
// its text in another order. What a CI runner reads in its log as a
// command is escaped too (see ciCommand): a policy's text printed in a
// pull request's check cannot set a step's output or mask a value.
func String(s string) string {
	if strings.ContainsFunc(s, unsafe) {
		q := strconv.Quote(s)
		s = q[1 : len(q)-1]
	}
	return ciCommand(s)
}

// ciCommand returns s with the marks that make a CI runner take a log line
// as a command escaped: "::" starting the line after white space (GitHub
// Actions' "::set-output name=x::v", "::add-mask::", "::stop-commands::",
// as its runner trims the line first), and "##[" or "##" and a word and
// "[" anywhere in it (the runner's older "##[set-output ...]", Azure
// Pipelines' "##vso[...]", TeamCity's "##teamcity[...]"). The ':' or '['
// is written \x3a or \x5b, as String writes what it escapes.
func ciCommand(s string) string {
	if rest := strings.TrimLeftFunc(s, unicode.IsSpace); strings.HasPrefix(rest, "::") {
		at := len(s) - len(rest)
		s = s[:at] + `\x3a` + s[at+1:]
	}
	return runnerBrackets(s, `\x5b`)
}

// JSON returns the JSON text b with the '[' of every "##[" (or "##", a
// word and "[") written \u005b: a CI runner reads those anywhere in a
// line as a command (see ciCommand), and the JSON decodes to the same
// value. Such a run can only stand inside a JSON string ('#' is no JSON
// token), and no line of JSON text starts with "::".
func JSON(b []byte) []byte {
	if !bytes.Contains(b, []byte("##")) {
		return b
	}
	return []byte(runnerBrackets(string(b), `\u005b`))
}

// runnerBrackets returns s with the '[' after every "##" and the letters
// following it written esc.
func runnerBrackets(s, esc string) string {
	i := strings.Index(s, "##")
	if i < 0 {
		return s
	}
	var b strings.Builder
	for i >= 0 {
		j := i + 2
		for j < len(s) && (s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
			j++
		}
		if j < len(s) && s[j] == '[' {
			b.WriteString(s[:j])
			b.WriteString(esc)
			s = s[j+1:]
		} else {
			b.WriteString(s[:i+1])
			s = s[i+1:]
		}
		i = strings.Index(s, "##")
	}
	b.WriteString(s)
	return b.String()
}

// unsafe reports whether r must be escaped (utf8.RuneError stands for a
// byte that is not UTF-8, and for U+FFFD itself, escaped alike).
func unsafe(r rune) bool {
	return r != '\t' && (unicode.IsControl(r) || unicode.In(r, unicode.Cf, unicode.Zl, unicode.Zp) || r == utf8.RuneError)
}

// Lines is String for text of several lines: each line of s is made safe
// as String makes it, and the line breaks between them are kept, every
// line after the first beginning with indent, so that none can pass for a
// line of its own (an error message's, a problem's) or for the start of
// the next.
func Lines(s, indent string) string {
	if !strings.Contains(s, "\n") {
		return String(s)
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = String(l)
	}
	return strings.Join(lines, "\n"+indent)
}

// Cut returns s cut to at most n bytes, at a character boundary, with "…"
// marking the cut, and s itself when it is no longer: text from outside (a
// server's status line, an error quoting its body, a client's field name)
// can be megabytes long.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// Token returns the redacted form of a bearer token, to print in its place:
// "[redacted jwt sha256:1a2b3c4d]", where the fingerprint is the first 8 hex
// digits of the token's SHA-256, enough to correlate lines without
// revealing the token; "[empty jwt]" for "".
func Token(tok string) string {
	if tok == "" {
		return "[empty jwt]"
	}
	sum := sha256.Sum256([]byte(tok))
	return "[redacted jwt sha256:" + hex.EncodeToString(sum[:4]) + "]"
}
