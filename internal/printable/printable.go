// Package printable makes text from outside safe to print on a terminal.
package printable

import (
	"strconv"
	"strings"
	"unicode"
)

// String returns s with its control characters other than tab, and its
// format characters (bidirectional overrides such as U+202E, zero-width
// ones), written as Go escapes, and s itself when it has none: printed,
// such a string cannot move a terminal's cursor, change its colours, forge
// a line of its own or show its text in another order.
func String(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
