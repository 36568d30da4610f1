package authz_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets: every Go snippet in the README appears, line for line
// (indentation aside), in this package's Example functions, which the
// compiler checks, so the README cannot show code that does not compile.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	normalize := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if l = strings.Join(strings.Fields(l), " "); l != "" {
				out = append(out, l)
			}
		}
		return out
	}
	source := strings.Join(normalize(string(examples)), "\n")
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	if len(blocks) == 0 {
		t.Fatal("the README has no Go snippets")
	}
	for _, b := range blocks {
		snippet := strings.Join(normalize(b[1]), "\n")
		if !strings.Contains(source, snippet) {
			t.Errorf("README snippet is not in example_test.go (copy it from there):\n%s", b[1])
		}
	}
}
