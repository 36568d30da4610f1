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

// TestCheckWarnsOfSizedCalls: a call that lets a request size a built-in's
// result is a warning at its place, exit status 0; bounded first, none; the
// default policies have none.
func TestCheckWarnsOfSizedCalls(t *testing.T) {
	if code, _, errOut := verdict(t, "check", "../../policies"); code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("the default policies: exit %d, %q", code, errOut)
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "p.rego")
	authztest.WriteFile(t, p, "package authz\n\nallow if count(numbers.range(1, input.resource.n)) > 0\n")
	code, out, errOut := verdict(t, "check", dir)
	if want := "warning: " + p + ":3:16: verdict_sized_by_input: numbers.range sized by a request's values"; code != 0 || !strings.Contains(errOut, want) || !strings.HasPrefix(out, "ok:") {
		t.Fatalf("exit %d, %q %q; want 0 and %q", code, out, errOut, want)
	}
	authztest.WriteFile(t, p, "package authz\n\nallow if {\n\tinput.resource.n < 100\n\tcount(numbers.range(1, input.resource.n)) > 0\n}\n")
	if code, _, errOut := verdict(t, "check", dir); code != 0 || strings.Contains(errOut, "warning") {
		t.Fatalf("bounded first: exit %d, %q", code, errOut)
	}
}

// TestCheckParseErrorAtEnd: a policy cut short at its end is one problem,
// file:line:col at the point where its text stops, however the policy is
// named (a directory is read through OPA's bundle reader, a file parsed by
// the engine); it was printed twice, on the line after the last, without
// a column.
func TestCheckParseErrorAtEnd(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "authz", "authz.rego")
	authztest.WriteFile(t, p, "package authz\n\nallow := true\n\nbroken := {\n")
	want := p + ":5:12: rego_parse_error: unexpected eof token: expected rule value term"
	for _, path := range []string{dir, p} {
		code, _, errOut := verdict(t, "check", path)
		if code != 1 || !strings.Contains(errOut, want) || strings.Count(errOut, "rego_parse_error") != 1 {
			t.Errorf("check %s: exit %d, stderr:\n%s\nwant 1 and the one problem %q", path, code, errOut, want)
		}
	}
}

// TestMissingEntrypoint: a policy set without the entrypoint package is an
// error in the command's own format (verdict: ...), which suggests
// --entrypoint for the packages its policy modules declare (not its tests'
// packages); it was printed bare, with no way out named.
func TestMissingEntrypoint(t *testing.T) {
	two := t.TempDir()
	authztest.WriteFile(t, filepath.Join(two, "a.rego"), "package a\n\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(two, "b.rego"), "package b.c\n\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(two, "a_test.rego"), "package a_test\n\ntest_a if data.a.allow\n")
	const missing = `verdict: no module declares the entrypoint package "authz"`
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string // the whole of stderr
	}{
		{name: "no module", args: []string{"check", t.TempDir()}, wantCode: 1, want: missing + "\n"},
		{name: "one package", args: []string{"check", "../../policies/examples/authzen-todo"}, wantCode: 1,
			want: missing + " (the modules declare package todo): pass --entrypoint todo\n"},
		{name: "test, one package", args: []string{"test", "../../policies/examples/authzen-todo"}, wantCode: 1,
			want: missing + " (the modules declare package todo): pass --entrypoint todo\n"},
		{name: "decide, one package", args: []string{"decide", "--policies", "../../policies/examples/authzen-todo", "--action", "x"}, wantCode: 2,
			want: missing + " (the modules declare package todo): pass --entrypoint todo\n"},
		{name: "two packages", args: []string{"check", two}, wantCode: 1,
			want: missing + " (the modules declare packages a, b.c): pass --entrypoint and one of them\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, _, errOut := verdict(t, tc.args...); code != tc.wantCode || errOut != tc.want {
				t.Errorf("exit %d, stderr %q; want %d, %q", code, errOut, tc.wantCode, tc.want)
			}
		})
	}
	if code, _, errOut := verdict(t, "check", "--entrypoint", "todo", "../../policies/examples/authzen-todo"); code != 0 {
		t.Errorf("the suggestion followed: exit %d, %s", code, errOut)
	}
}
