package printable_test

import (
	"testing"

	"github.com/verdict-pdp/verdict/internal/printable"
)

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"plain \"text\"\tand é": "plain \"text\"\tand é",
		"a\x1b[2Jb":             `a\x1b[2Jb`,
		"x\r\nreplayed 1":       `x\r\nreplayed 1`,
		"\u0085next line":       `\u0085next line`,
		"evil\u202egnp.exe":     `evil\u202egnp.exe`,
		"zero\u200bwidth":       `zero\u200bwidth`,
		"line\u2028sep":         `line\u2028sep`,
		"csi\x9b31m":            `csi\x9b31m`,
	} {
		if got := printable.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}
