package printable_test

import (
	"bytes"
	"encoding/json"
	"reflect"
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
		// What a CI runner takes as a command of its own.
		"::add-mask::secret":           `\x3a:add-mask::secret`,
		"  \t::set-output name=a::b":   "  \t" + `\x3a:set-output name=a::b`,
		"\u3000::warning::forged":      "\u3000" + `\x3a:warning::forged`,
		"a ::not-a-command::":          "a ::not-a-command::",
		"x ##[set-output name=a;]b":    `x ##\x5bset-output name=a;]b`,
		"##vso[task.setvariable]x":     `##vso\x5btask.setvariable]x`,
		"###[x] ##TeamCity[y] ## [z]#": `###\x5bx] ##TeamCity\x5by] ## [z]#`,
		"## heading #[ok] ##":          "## heading #[ok] ##",
	} {
		if got := printable.String(in); got != want {
			t.Errorf("String(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestLines: the line breaks of a message of several lines are kept, the
// lines after the first indented, each line made safe as String makes it.
func TestLines(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "one line", want: "one line"},
		{in: "a\x1b[2Jb", want: `a\x1b[2Jb`},
		{in: "values:\n  true at p.rego:7\n  false at p.rego:8", want: "values:\n    true at p.rego:7\n    false at p.rego:8"},
		{in: "x\r\nverdict: forged\n", want: `x\r` + "\n  verdict: forged\n  "},
		{in: "a\n\x1b[2Jb", want: "a\n  " + `\x1b[2Jb`},
		{in: "a\n::error::forged", want: "a\n  " + `\x3a:error::forged`},
	} {
		if got := printable.Lines(tc.in, "  "); got != tc.want {
			t.Errorf("Lines(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestJSON: a runner command inside a JSON string is written so that the
// runner does not read it, and the JSON decodes to the same value.
func TestJSON(t *testing.T) {
	v := map[string]any{"reasons": []any{"x ##[set-output name=a;]b", "##vso[task.setvariable]c", "## [not]", "plain"}}
	raw, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got := printable.JSON(raw)
	if bytes.Contains(got, []byte("##[")) || bytes.Contains(got, []byte("##vso[")) {
		t.Errorf("a runner command left in %s", got)
	}
	var back map[string]any
	if err := json.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back, v) {
		t.Errorf("JSON(%s) = %s, decoding to %v (%v); want the same value", raw, got, back, err)
	}
	if plain := []byte(`{"a": "## [b]"}`); !bytes.Equal(printable.JSON(plain), plain) {
		t.Errorf("JSON changed %s", plain)
	}
}

// TestCut: text is cut at a character boundary, the cut marked, and left
// alone within the bound.
func TestCut(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 5, "short"},
		{"longer", 4, "long…"},
		{"héllo", 2, "h…"}, // é is two bytes: not cut in half
		{"héllo", 3, "hé…"},
		{"日本", 1, "…"},
		{"", 0, ""},
	} {
		if got := printable.Cut(tc.in, tc.n); got != tc.want {
			t.Errorf("Cut(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

// TestToken: a token prints as a fingerprint of its SHA-256, never itself;
// the empty token says so.
func TestToken(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "[empty jwt]"},
		// sha256("abc") = ba7816bf…
		{"abc", "[redacted jwt sha256:ba7816bf]"},
	} {
		if got := printable.Token(tc.in); got != tc.want {
			t.Errorf("Token(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
