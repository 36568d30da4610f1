// Package printable makes text from outside safe to print on a terminal.
package printable

import (
	"strconv"
	"strings"
	"unicode"
)

// String returns s with its control characters other than tab written as
// Go escapes, and s itself when it has none: printed, such a string cannot
// move a terminal's cursor, change its colours or forge a line of its own.
func String(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) {
		return s
	}
	q := strconv.Quote(s)
	return q[1 : len(q)-1]
}
