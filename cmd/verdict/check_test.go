package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestCheckStrict: --strict reports what OPA's strict mode refuses, each
// at its place; without it the same policy checks clean, as it loads; the
// default policies pass both.
func TestCheckStrict(t *testing.T) {
	if code, out, errOut := verdict(t, "check", "--strict", "../../policies"); code != 0 {
		t.Fatalf("the default policies: exit %d, %q %q", code, out, errOut)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "p.rego")
	authztest.WriteFile(t, p, "package authz\n\nimport data.foo\n\nallow if {\n\tx := 1\n\tinput.action.name == \"a\"\n}\n\nf(a, b) := a\n")
	if code, out, errOut := verdict(t, "check", dir); code != 0 {
		t.Fatalf("without --strict: exit %d, %q %q", code, out, errOut)
	}
	code, _, errOut := verdict(t, "check", "--strict", dir)
	if code != 1 {
		t.Fatalf("with --strict: exit %d, want 1: %s", code, errOut)
	}
	for _, want := range []string{p + ":3:1: rego_compile_error: import data.foo unused", p + ":6:2: rego_compile_error: assigned var x unused",
		p + ":10:1: rego_compile_error: unused argument b"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("missing %q in:\n%s", want, errOut)
		}
	}
}
