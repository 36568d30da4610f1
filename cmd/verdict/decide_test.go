package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestDecideRequestFlagsUsage: the flags that build the input document
// are a usage error (exit 2, no decision, the flags named) with --input,
// which evaluates a document as written and left them out without a word;
// and half of the --method/--path pair is a usage error, which was decided
// as an action of no name (a deny, exit 1).
func TestDecideRequestFlagsUsage(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow := true\n")
	doc := filepath.Join(dir, "case.json")
	authztest.WriteFile(t, doc, `{"action": {"name": "read"}}`)
	cert := filepath.Join(dir, "caller.pem")
	authztest.WriteFile(t, cert, "not read")
	for _, tc := range []struct {
		name string
		args []string
		want string // on stderr
	}{
		{name: "--input with --action", args: []string{"--input", doc, "--action", "write"},
			want: "verdict: --input is evaluated as written: --action cannot be combined with it"},
		{name: "--input with --method and --path", args: []string{"--input", doc, "--method", "GET", "--path", "/x"},
			want: "--method, --path cannot be combined with it"},
		{name: "--input with --token", args: []string{"--input", doc, "--token", "t"}, want: "--token cannot"},
		{name: "--input with an empty --token", args: []string{"--input", doc, "--token", ""}, want: "--token cannot"},
		{name: "--input with --caller-token", args: []string{"--input", doc, "--caller-token", "t"}, want: "--caller-token cannot"},
		{name: "--input with --caller-cert", args: []string{"--input", doc, "--caller-cert", cert}, want: "--caller-cert cannot"},
		{name: "--input with --resource", args: []string{"--input", doc, "--resource", `{"id": "1"}`}, want: "--resource cannot"},
		{name: "--input with --attributes", args: []string{"--input", doc, "--attributes", `{"a": 1}`}, want: "--attributes cannot"},
		{name: "--input with all of them", args: []string{"--input", doc, "--resource", "{}", "--action", "a", "--token", "t"},
			want: "--token, --action, --resource cannot"},
		{name: "--method without --path", args: []string{"--method", "GET"}, want: "verdict: --method without --path: give both, or --action"},
		{name: "--path without --method", args: []string{"--path", "/x"}, want: "verdict: --path without --method: give both, or --action"},
		{name: "--action with half the pair", args: []string{"--action", "read", "--method", "GET"}, want: "--method without --path"},
		{name: "no action", args: []string{"--token", "t"}, want: "verdict: give --action, or --method and --path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := verdict(t, append([]string{"decide", "--policies", policy}, tc.args...)...)
			if code != 2 || out != "" || !strings.Contains(stderr, tc.want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want 2, no decision, stderr saying %q", code, out, stderr, tc.want)
			}
		})
	}
	for _, args := range [][]string{
		{"--input", doc},
		{"--input", doc, "--time", "2026-12-01T10:00:00Z", "--explain=json"},
		{"--method", "GET", "--path", "/x"},
		{"--action", "read", "--method", "GET", "--path", "/x"},
	} {
		if code, out, stderr := verdict(t, append([]string{"decide", "--policies", policy}, args...)...); code != 0 {
			t.Errorf("%q: exit %d, want 0\n%s%s", args, code, out, stderr)
		}
	}
}

// TestDecideDevKey: a --dev-key given must be read: a path that cannot be
// is a usage error (exit 2, the path named), where it was taken for no key
// and every token was denied; without the flag, a default key that does
// not exist still means none. --dev-key with --config, which names the
// issuers, is a usage error too.
func TestDecideDevKey(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow if input.subject.id == \"alice\"\n")
	key := filepath.Join(dir, "dev.key")
	_, tok, _ := verdict(t, "token", "--dev-key", key, "--sub", "alice")
	tok = strings.TrimSpace(tok)
	notKey := filepath.Join(dir, "not-a-key.pem")
	authztest.WriteFile(t, notKey, "hello\n")
	cfg := filepath.Join(dir, "verdict.yaml")
	authztest.WriteFile(t, cfg, "policy:\n  dir: "+dir+"\n")
	missing := filepath.Join(dir, "missing.pem")
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config")) // no default key there
	t.Setenv("HOME", filepath.Join(dir, "home"))
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string // on stderr
	}{
		{name: "a missing key", args: []string{"--dev-key", missing}, wantCode: 2, want: "verdict: --dev-key: devtoken: open " + missing},
		{name: "a file that is no key", args: []string{"--dev-key", notKey}, wantCode: 2, want: "verdict: --dev-key: devtoken: " + notKey + ": no PKCS#8 PRIVATE KEY block"},
		{name: "with --config", args: []string{"--dev-key", key, "--config", cfg}, wantCode: 2, want: "verdict: --dev-key is trusted only without --config"},
		{name: "the key", args: []string{"--dev-key", key}, wantCode: 0},
		{name: "no default key: no issuer", wantCode: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"decide", "--policies", policy, "--action", "read", "--token", tok}, tc.args...)
			code, out, stderr := verdict(t, args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.want) || code == 2 && out != "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d saying %q", code, out, stderr, tc.wantCode, tc.want)
			}
		})
	}
}
