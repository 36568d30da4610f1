// Package printable makes text from outside safe to print on a terminal.
package printable

import (
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
// its text in another order.
func String(s string) string {
	if !strings.ContainsFunc(s, unsafe) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
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
