package main

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// writeTree writes files (slash-separated names relative to the root) into
// a new temporary directory and returns it.
func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		authztest.WriteFile(t, filepath.Join(dir, filepath.FromSlash(name)), content)
	}
	return dir
}

// TestTestReportIsPrintable runs tests whose error messages, trace notes
// and failing lines quote a policy's strings: the report holds no raw
// control character, and no line of the policy's starts a line of its own.
func TestTestReportIsPrintable(t *testing.T) {
	const policy = "package authz\n\ndefault allow := false\n"
	for _, tc := range []struct {
		name  string
		test  string
		flags []string
	}{
		{name: "error message", test: "test_a if {\n\tregex.match(`[\n::warning file=x.rego,line=1::injected\n\x1b[2J`, \"x\")\n}\n"},
		{name: "error message, verbose", test: "test_a if {\n\tregex.match(`[\n::warning file=x.rego,line=1::injected\n\x1b[2J`, \"x\")\n}\n",
			flags: []string{"-v"}},
		{name: "trace note", test: "test_a if {\n\ttrace(\"\\u001b]0;t\\u0007\\nPASS: 40/40\")\n\tfalse\n}\n", flags: []string{"-v"}},
		{name: "failing line", test: "test_a if {\n\t`\x1b[2J\n::warning::x` == \"y\"\n}\n"},
		{name: "failing line, verbose", test: "test_a if {\n\t`\x1b[2J\n::warning::x` == \"y\"\n}\n", flags: []string{"-v"}},
		{name: "runner command inside a line", test: "test_a if {\n\ttrace(\"x ##[set-output name=a;]b ##vso[task.setvariable variable=a]b\")\n\tprint(\"y ##[add-mask]z\")\n\tfalse\n}\n",
			flags: []string{"-v"}},
		{name: "sub-result name", test: "test_a[name] if {\n\tsome name in [\"\\u001b[2J\\n::warning::x\"]\n\tfalse\n}\n", flags: []string{"-v"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeTree(t, map[string]string{
				"authz/authz.rego":      policy,
				"authz/authz_test.rego": "package authz_test\n\n" + tc.test,
			})
			code, out, stderr := verdict(t, append([]string{"test", dir}, tc.flags...)...)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stdout:\n%s\nstderr:\n%s", code, out, stderr)
			}
			if strings.ContainsFunc(out, func(r rune) bool { return r < ' ' && r != '\n' && r != '\t' }) {
				t.Errorf("a raw control character in verdict test's output:\n%q", out)
			}
			for line := range strings.Lines(out + stderr) {
				if s := strings.TrimSpace(line); strings.HasPrefix(s, "::") || strings.HasPrefix(s, "PASS: 40") ||
					strings.Contains(s, "##[") || strings.Contains(s, "##vso[") {
					t.Errorf("a forged line %q in verdict test's output:\n%s%s", line, out, stderr)
				}
			}
		})
	}
}

// TestLineWriter checks the last guard on verdict test's report: whatever
// OPA's reporter prints, each line reaches the output printable, line
// breaks kept.
func TestLineWriter(t *testing.T) {
	var got bytes.Buffer
	lw := &lineWriter{w: &got}
	for _, s := range []string{"PASS: 1/1\n  a\x1b[2J", "b\n\tc\x07\n", "last\x9b"} {
		if _, err := lw.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	if err := lw.Flush(); err != nil {
		t.Fatal(err)
	}
	if want := "PASS: 1/1\n  a\\x1b[2Jb\n\\tc\\a\nlast\\x9b"; got.String() != want {
		t.Errorf("got %q, want %q", got.String(), want)
	}
}

// TestJSONOutputHasNoRunnerCommand: what decide, test --json and replay
// print of a policy's reasons holds no CI runner command (##[...] is read
// anywhere in a line), and the JSON still decodes to the policy's text.
func TestJSONOutputHasNoRunnerCommand(t *testing.T) {
	const reason = "x ##[set-output name=a;]b"
	dir := writeTree(t, map[string]string{
		"authz/authz.rego":      "package authz\n\nallow := false\n\nreasons contains \"" + reason + "\"\n",
		"authz/authz_test.rego": "package authz_test\n\ntest_a if {\n\tto_number(\"" + reason + "\") == 1\n}\n",
	})
	code, out, stderr := verdict(t, "decide", "--policies", dir, "--action", "orders:read")
	if code != 1 {
		t.Fatalf("decide: exit %d, want 1 (a deny)\n%s%s", code, out, stderr)
	}
	var d struct{ Reasons []string }
	if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Reasons) != 1 || d.Reasons[0] != reason {
		t.Errorf("decide printed %s (%v); want the reason %q", out, err, reason)
	}
	if strings.Contains(out, "##[") {
		t.Errorf("decide printed a runner command:\n%s", out)
	}
	// The erring test's report quotes the built-in's error, which quotes
	// the policy's string.
	code, out, stderr = verdict(t, "test", "--json", dir)
	if code != 1 || !strings.Contains(out, "set-output") || strings.Contains(out, "##[") {
		t.Errorf("test --json: exit %d, want 1 and its error without a runner command:\n%s%s", code, out, stderr)
	}
}
