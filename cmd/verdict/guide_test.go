package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPolicyGuide keeps the policy author's guide (policies/README.md)
// honest: the explanation, coverage and input lines it shows are what the
// tools print on the default policies.
func TestPolicyGuide(t *testing.T) {
	guide, err := os.ReadFile("../../policies/README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Every "  file.rego:N: rule = value" line the guide shows.
	shown := regexp.MustCompile(`(?m)^  (policies/authz/\w+\.rego:\d+: .+)$`).FindAllStringSubmatch(string(guide), -1)
	if len(shown) < 5 {
		t.Fatalf("the guide shows %d explanation lines; the pattern no longer finds them", len(shown))
	}
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	_, tok, _ := verdict(t, "token", "--dev-key", key, "--sub", "alice", "--roles", "viewer")
	code, _, stderr := verdict(t, "decide", "--policies", "../../policies", "--dev-key", key,
		"--token", strings.TrimSpace(tok), "--action", "orders:read", "--explain")
	if code != 0 {
		t.Fatalf("decide --explain: exit %d\n%s", code, stderr)
	}
	_, cov, _ := verdict(t, "test", "../../policies", "--coverage")
	// The guide's commands run at the top of the tree.
	stderr = strings.ReplaceAll(stderr, "../../policies/", "policies/")
	cov = strings.ReplaceAll(cov, "../../policies/", "policies/")
	for _, m := range shown {
		if !strings.Contains(stderr, "  "+m[1]+"\n") && !strings.Contains(cov, "  "+m[1]+"\n") {
			t.Errorf("the guide shows %q, which neither decide --explain nor test --coverage prints:\n%s\n%s", m[1], stderr, cov)
		}
	}
	for _, want := range []string{"coverage: 99.3% (135 of 136 lines)", "not covered:\n  policies/authz/authz.rego:29\n"} {
		if !strings.Contains(cov, want) || !strings.Contains(string(guide), want) {
			t.Errorf("guide and test --coverage disagree on %q:\n%s", want, cov)
		}
	}

	// The --input case.
	input := regexp.MustCompile("(?s)\\$ cat case.json\n(.*?)\n\\$ ").FindStringSubmatch(string(guide))
	if input == nil {
		t.Fatal("the guide's case.json is gone; the pattern no longer finds it")
	}
	file := filepath.Join(t.TempDir(), "case.json")
	if err := os.WriteFile(file, []byte(input[1]), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := verdict(t, "decide", "--policies", "../../policies", "--input", file, "--time", "2026-12-01T20:00:00Z")
	if code != 0 || !strings.Contains(out, `"role viewer grants orders:read"`) {
		t.Errorf("the guide's case.json: exit %d\n%s", code, out)
	}
}
