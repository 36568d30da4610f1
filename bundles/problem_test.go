package bundles_test

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/bundles"
)

func TestProblemString(t *testing.T) {
	for _, tc := range []struct {
		p    bundles.Problem
		want string
	}{
		{bundles.Problem{File: "a.rego", Line: 3, Col: 2, Code: "rego_type_error", Message: "match error", Details: []string{"left  : number", "right : string"}},
			"a.rego:3:2: rego_type_error: match error\n\tleft  : number\n\tright : string"},
		{bundles.Problem{File: "a.rego", Line: 3, Message: "m"}, "a.rego:3: m"},
		{bundles.Problem{File: "a.rego", Message: "m"}, "a.rego: m"},
		{bundles.Problem{Code: "c", Message: "m"}, "c: m"},
		// Control characters from a tarball entry's name or a binary file
		// read as a policy are written as escapes.
		{bundles.Problem{File: "a\x1b[2J.rego\nb.rego:1: forged", Line: 1, Message: "bad\rline", Details: []string{"\x00\x07\tx"}},
			`a\x1b[2J.rego\nb.rego:1: forged:1: bad\rline` + "\n\t" + `\x00\a\tx`},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

type carrier struct{ ps []bundles.Problem }

func (c *carrier) Error() string                     { return "carried" }
func (c *carrier) PolicyProblems() []bundles.Problem { return c.ps }

// TestProblems: located problems come from a carrier in the chain first,
// else from OPA's errors (named as they name the file: an absolute path
// stays one), else there are none. A read names them as the snapshot does,
// without the bundle reader's leading slash.
func TestProblems(t *testing.T) {
	c := &carrier{ps: []bundles.Problem{{File: "x.rego", Line: 1, Message: "from the carrier"}}}
	if got := bundles.Problems(fmt.Errorf("wrapped: %w", c)); len(got) != 1 || got[0].Message != "from the carrier" {
		t.Errorf("carrier: %v", got)
	}
	opa := ast.Errors{ast.NewError(ast.TypeErr, &ast.Location{File: "/authz/p.rego", Row: 4, Col: 2}, "bad")}
	if got := bundles.Problems(fmt.Errorf("read: %w", opa)); len(got) != 1 || got[0].File != "/authz/p.rego" || got[0].Line != 4 {
		t.Errorf("OPA errors: %v", got)
	}
	if got := bundles.Problems(errors.New("plain")); got != nil {
		t.Errorf("plain error: %v", got)
	}
	if got := bundles.FormatError(fmt.Errorf("read: %w", opa)); got != "/authz/p.rego:4:2: rego_type_error: bad" {
		t.Errorf("FormatError = %q", got)
	}
	_, err := bundles.ReadFS(fstest.MapFS{"authz/p.rego": {Data: []byte("package authz\n\nallow if {\n")}}, bundles.ReadOptions{})
	if got := bundles.Problems(err); !errors.Is(err, bundles.ErrRead) || len(got) != 1 || got[0].File != "authz/p.rego" || got[0].Line != 3 || got[0].Col != 11 {
		t.Errorf("a read: %v, problems %v; want ErrRead and authz/p.rego:3:11", err, got)
	}
}

// TestProblemsAtEnd: a module that stops short is one problem, at the line
// and column where its text stops. OPA reported it twice ("unexpected eof
// token", then again with what it expected) and, for a text ending with a
// line break, on the line after it without a column. Both ways a policy
// is read (a tree through OPA's bundle reader, a module through the
// engine's parse) place it alike.
func TestProblemsAtEnd(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		line, col int
		message   string
	}{
		{name: "a rule cut short", src: "package authz\n\nallow := true\n\nbroken := {\n", line: 5, col: 12,
			message: "unexpected eof token: expected rule value term (e.g., broken := <VALUE> { ... })"},
		{name: "no final line break (OPA gives the column)", src: "package authz\n\nbroken := {", line: 3, col: 11,
			message: "unexpected eof token: expected rule value term (e.g., broken := <VALUE> { ... })"},
		{name: "blank lines after", src: "package authz\n\nallow if {\n\n  \n", line: 3, col: 11, message: "unexpected eof token"},
		{name: "a comment last", src: "package authz\n\nallow if {\n# é\n", line: 4, col: 4, message: "unexpected eof token"},
		{name: "a multibyte rune", src: "package authz\n\nx := \"é\" +\n", line: 3, col: 11},
		{name: "not at the end", src: "package authz\n\nallow if { input.x = }\n\nb := 1\n", line: 3, col: 22, message: "unexpected } token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, readErr := bundles.ReadFS(fstest.MapFS{"authz/p.rego": {Data: []byte(tc.src)}}, bundles.ReadOptions{})
			_, parseErr := ast.ParseModule("authz/p.rego", tc.src)
			parsed := bundles.Problems(parseErr)
			bundles.PlaceAtEnd(parsed, "authz/p.rego", []byte(tc.src))
			for way, ps := range map[string][]bundles.Problem{"read": bundles.Problems(readErr), "parsed": parsed} {
				if len(ps) != 1 {
					t.Fatalf("%s: %d problems, want 1: %v", way, len(ps), ps)
				}
				p := ps[0]
				if p.File != "authz/p.rego" || p.Line != tc.line || p.Col != tc.col || p.Code != ast.ParseErr || !strings.HasPrefix(p.Message, tc.message) {
					t.Errorf("%s: %s, want authz/p.rego:%d:%d: rego_parse_error: %s", way, p, tc.line, tc.col, tc.message)
				}
			}
		})
	}
}

// TestDataFileProblems: a data file that does not decode is a located
// problem, as a module that does not parse is: its file, and for a syntax
// error its line (and for JSON its column); it was an error without a
// location, which verdict check reported as a usage error.
func TestDataFileProblems(t *testing.T) {
	module := &fstest.MapFile{Data: []byte("package authz\n\nallow := true\n")}
	for _, tc := range []struct {
		name, file, content string
		line, col           int
		message             string
	}{
		{"json syntax", "data.json", "{\"public\": [\n  \"a\",\n}", 3, 1, "invalid character '}'"},
		{"json literal", "sub/data.json", `{"a": tru}`, 1, 10, "in literal true"},
		{"json after a multibyte rune", "data.json", `{"a": "é" x}`, 1, 11, "after object key:value pair"},
		{"yaml syntax", "data.yaml", "a: b\n c: [\n", 2, 0, "mapping values are not allowed"},
		{"json root not an object", "data.json", `[1]`, 0, 0, "root value must be object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bundles.ReadFS(fstest.MapFS{"authz/p.rego": module, tc.file: {Data: []byte(tc.content)}}, bundles.ReadOptions{})
			ps := bundles.Problems(err)
			if !errors.Is(err, bundles.ErrRead) || len(ps) != 1 {
				t.Fatalf("%v, problems %v; want ErrRead with one problem", err, ps)
			}
			p := ps[0]
			if p.File != tc.file || p.Line != tc.line || p.Col != tc.col || p.Code != "verdict_data_error" || !strings.Contains(p.Message, tc.message) {
				t.Errorf("problem %+v, want %s:%d:%d: verdict_data_error: …%s…", p, tc.file, tc.line, tc.col, tc.message)
			}
		})
	}
}

// TestDataFileProblemNotDecodedAgain: locating a broken data file decodes
// nothing. A YAML file whose second document is broken has its first
// document, full of aliases, left undecoded by the reader and uncharged by
// the parse estimate; decoding it again to find the line allocated some
// 50 MiB from 9 KB.
func TestDataFileProblemNotDecodedAgain(t *testing.T) {
	var b strings.Builder
	b.WriteString("f: [" + strings.Repeat("1,", 4100) + "]\nl0: &l0 [" + strings.Repeat("{a: b}, ", 10) + "]\nl1: &l1 [")
	b.WriteString(strings.Repeat("*l0, ", 100) + "]\nl2: [" + strings.Repeat("*l1, ", 120) + "]\n---\n[\n")
	fsys := fstest.MapFS{"authz/p.rego": {Data: []byte("package authz\n\nallow := true\n")}, "data.yaml": {Data: []byte(b.String())}}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := bundles.ReadFS(fsys, bundles.ReadOptions{Limits: bundles.Limits{MaxUnpackedBytes: 16 << 20}})
	runtime.ReadMemStats(&after)
	if ps := bundles.Problems(err); len(ps) != 1 || ps[0].File != "data.yaml" {
		t.Fatalf("%v, problems %v; want one in data.yaml", err, ps)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %.1f MiB reading a %d-byte file, want at most 16", float64(alloc)/(1<<20), b.Len())
	}
}
