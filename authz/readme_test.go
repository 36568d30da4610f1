package authz_test

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestREADMESnippets: every Go snippet in the README appears, line for line
// (indentation aside), in the Example functions of this package or of
// package client, which the compiler checks, so the README cannot show
// code that does not compile.
func TestREADMESnippets(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var examples []byte
	for _, f := range []string{"example_test.go", "../client/example_test.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		examples = append(append(examples, b...), '\n')
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
			t.Errorf("README snippet is in no example_test.go (copy it from one):\n%s", b[1])
		}
	}
}
