package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/bundles"
)

// verdict runs the command line in-process and returns its exit code and
// output.
func verdict(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(t.Context(), args, strings.NewReader(""), &out, &errOut)
	return code, out.String(), errOut.String()
}

// serve runs `verdict serve --config config` until ctx is done, with
// stdout to stdout, and waits for its "listening" log line. It returns the
// server's base URL, its stderr so far and later, and the channel its exit
// status arrives on.
func serve(t *testing.T, ctx context.Context, config string, stdout io.Writer) (base string, stderr *authztest.SyncBuffer, done <-chan int) {
	t.Helper()
	return serveArgs(t, ctx, stdout, "--config", config)
}

// serveArgs is serve with the command line's flags given.
func serveArgs(t *testing.T, ctx context.Context, stdout io.Writer, args ...string) (base string, stderr *authztest.SyncBuffer, done <-chan int) {
	t.Helper()
	stderr = new(authztest.SyncBuffer)
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, append([]string{"serve"}, args...), strings.NewReader(""), stdout, stderr)
	}()
	addrRe := regexp.MustCompile(`addr=(127\.0\.0\.1:\d+)`)
	for deadline := time.Now().Add(10 * time.Second); base == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no address:\n%s", stderr.String())
		}
		if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
			base = "http://" + m[1]
		}
	}
	return base, stderr, exit
}

// stopServe cancels a serve (through cancel) and fails t unless it exits 0
// within 15 s.
func stopServe(t *testing.T, cancel context.CancelFunc, done <-chan int, stderr *authztest.SyncBuffer) {
	t.Helper()
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit %d\n%s", code, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop\n%s", stderr.String())
	}
}

func decision(t *testing.T, out string) (allow bool, reasons []string) {
	t.Helper()
	var d struct {
		Allow   bool     `json:"allow"`
		Reasons []string `json:"reasons"`
		ID      string   `json:"decision_id"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || d.ID == "" {
		t.Fatalf("output is not a decision: %q (%v)", out, err)
	}
	return d.Allow, d.Reasons
}

// TestDevTokenDecide walks the README's policy-author flow: mint a token,
// ask for decisions against the default policies.
func TestDevTokenDecide(t *testing.T) {
	key := filepath.Join(t.TempDir(), "dev-key.pem")
	code, viewer, stderr := verdict(t, "token", "--dev-key", key, "--sub", "alice", "--roles", "viewer")
	if code != 0 || !strings.Contains(stderr, "NOT FOR PRODUCTION") {
		t.Fatalf("token: exit %d, stderr %q", code, stderr)
	}
	viewer = strings.TrimSpace(viewer)
	_, service, _ := verdict(t, "token", "--dev-key", key, "--sub", "payments", "--azp", "payments")
	service = strings.TrimSpace(service)
	_, stranger, _ := verdict(t, "token", "--dev-key", filepath.Join(t.TempDir(), "other.pem"), "--roles", "admin")

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantReason string
	}{
		{"viewer reads orders", []string{"--token", viewer, "--action", "orders:read"}, 0, "role viewer grants orders:read"},
		{"viewer cannot delete", []string{"--token", viewer, "--action", "orders:delete"}, 1, "no role grants orders:delete"},
		{"public action", []string{"--action", "catalog:read"}, 0, "anonymous access to catalog:read is public"},
		{"derived action", []string{"--token", viewer, "--method", "GET", "--path", "/orders/42"}, 0, "role viewer grants orders:read"},
		{"service allowlist", []string{"--caller-token", service, "--action", "inventory:reserve"}, 0, ""},
		{"user cannot reserve", []string{"--token", viewer, "--action", "inventory:reserve"}, 1, ""},
		{"untrusted key", []string{"--token", strings.TrimSpace(stranger), "--action", "orders:read"}, 1, "token: unknown_kid"},
		{"tampered", []string{"--token", viewer + "x", "--action", "orders:read"}, 1, "token: malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := verdict(t, append([]string{"decide", "--policies", "../../policies", "--dev-key", key}, tc.args...)...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout %s stderr %s", code, tc.wantCode, out, stderr)
			}
			allow, reasons := decision(t, out)
			if allow != (tc.wantCode == 0) {
				t.Errorf("allow = %v with exit %d", allow, code)
			}
			if tc.wantReason != "" && (len(reasons) == 0 || reasons[0] != tc.wantReason) {
				t.Errorf("reasons = %q, want %q first", reasons, tc.wantReason)
			}
		})
	}
}

func TestDecideUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"decide"},
		{"decide", "--action", "x"}, // no policies named: never a silent default
		{"decide", "--action", "x", "--resource", "[1]"},
		{"decide", "--action", "x", "--policies", filepath.Join(t.TempDir(), "missing")},
		{"decide", "--action", "x", "--config", filepath.Join(t.TempDir(), "missing.yaml")},
	} {
		if code, out, _ := verdict(t, args...); code != 2 || out != "" {
			t.Errorf("%q: exit %d, stdout %q; want 2 and no decision", args, code, out)
		}
	}
}

// TestDecideWithConfig uses a configuration file with a JWKS file and a
// policy directory, both written by the test.
func TestDecideWithConfig(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "keys", "idp.pem"), string(is.PublicKeyPEM(t)))
	authztest.WriteFile(t, filepath.Join(dir, "policies", "authz", "p.rego"), "package authz\n\nallow if input.subject.claims.tenant == data.tenant\n")
	authztest.WriteFile(t, filepath.Join(dir, "policies", "data.json"), `{"tenant": "acme"}`)
	authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), `policy:
  dir: policies
tokens:
  issuers:
    - issuer: `+is.Name+`
      audiences: [`+is.Audience+`]
      algorithms: [ES256]
      public_key_file: keys/idp.pem
`)
	cfg := filepath.Join(dir, "verdict.yaml")
	if code, out, stderr := verdict(t, "decide", "--config", cfg, "--action", "x", "--token", is.Mint(t, map[string]any{"tenant": "acme"})); code != 0 {
		t.Fatalf("acme: exit %d %s %s", code, out, stderr)
	}
	if code, out, _ := verdict(t, "decide", "--config", cfg, "--action", "x", "--token", is.Mint(t, map[string]any{"tenant": "other"})); code != 1 {
		t.Fatalf("other tenant: exit %d %s", code, out)
	}
	authztest.WriteFile(t, filepath.Join(dir, "bad.yaml"), "policy:\n  dir: policies\n  entrypiont: authz\n")
	code, _, stderr := verdict(t, "decide", "--config", filepath.Join(dir, "bad.yaml"), "--action", "x")
	if code != 2 || !strings.Contains(stderr, "bad.yaml:3: unknown key \"entrypiont\"") {
		t.Fatalf("bad config: exit %d, stderr %q", code, stderr)
	}
}

func TestTestAndCheck(t *testing.T) {
	if code, out, stderr := verdict(t, "test", "../../policies"); code != 0 || !strings.Contains(out, "PASS") {
		t.Fatalf("test policies: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, out, _ := verdict(t, "test", "../../policies", "--coverage"); code != 0 || !strings.Contains(out, "coverage:") {
		t.Fatalf("test --coverage: exit %d\n%s", code, out)
	}
	if code, out, _ := verdict(t, "check", "../../policies"); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Fatalf("check policies: exit %d %s", code, out)
	}

	broken := t.TempDir()
	authztest.WriteFile(t, filepath.Join(broken, "authz", "p.rego"), "package authz\n\nallow if {\n\tinput.subjet.id == \"x\"\n}\n")
	code, _, stderr := verdict(t, "check", broken)
	if code != 1 || !strings.Contains(stderr, "authz/p.rego:4:2: rego_type_error: undefined ref: input.subjet") {
		t.Fatalf("check broken: exit %d, stderr %q", code, stderr)
	}

	failing := t.TempDir()
	authztest.WriteFile(t, filepath.Join(failing, "authz", "p.rego"), "package authz\n\nallow := false\n")
	authztest.WriteFile(t, filepath.Join(failing, "authz", "p_test.rego"), "package authz_test\n\ntest_allows if data.authz.allow\n")
	if code, out, _ := verdict(t, "test", failing); code != 1 || !strings.Contains(out, "FAIL") {
		t.Fatalf("failing test: exit %d %s", code, out)
	}
	empty := t.TempDir()
	authztest.WriteFile(t, filepath.Join(empty, "authz", "p.rego"), "package authz\n\nallow := false\n")
	if code, _, stderr := verdict(t, "test", empty); code != 1 || !strings.Contains(stderr, "no tests") {
		t.Fatalf("no tests: exit %d %s", code, stderr)
	}
}

// TestBundleFile: decide and check accept an OPA bundle tarball.
func TestBundleFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "authz.tar.gz")
	writeBundle(t, path, map[string]string{
		"/.manifest":         `{"revision": "v42", "roots": ["authz", "tenants"]}`,
		"/authz/p.rego":      "package authz\n\nallow if input.action.name in data.tenants.open\n",
		"/tenants/data.json": `{"open": ["orders:read"]}`,
	})
	code, out, stderr := verdict(t, "decide", "--policies", path, "--action", "orders:read")
	if code != 0 || !strings.Contains(out, `"revision": "v42"`) {
		t.Fatalf("decide --policies BUNDLE: exit %d %s %s", code, out, stderr)
	}
	if code, out, _ := verdict(t, "check", path); code != 0 || !strings.Contains(out, "revision v42") {
		t.Fatalf("check bundle: exit %d %s", code, out)
	}
}

// TestPolicyPaths: check, test and decide read exactly the policies they are
// given — a directory, a .rego file or a bundle — and name none by default;
// problems in a policy print as file:line:col lines with exit status 1,
// whatever stage finds them (parse or type check), and usage errors exit 2.
func TestPolicyPaths(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.rego")
	authztest.WriteFile(t, good, "package authz\n\nallow if input.action.name == \"read\"\n")
	syntax := filepath.Join(dir, "syntax", "authz.rego")
	authztest.WriteFile(t, syntax, "package authz\n\nallow if {\n\tinput.action.name ==\n}\n")
	typeErr := filepath.Join(dir, "types", "authz.rego")
	authztest.WriteFile(t, typeErr, "package authz\n\nallow if input.subjet.id == \"x\"\n")
	contract := filepath.Join(dir, "contract", "authz.rego")
	authztest.WriteFile(t, contract, "package authz\n\nallow := true\n\nheaders := {\"x-n\": 1}\n")
	// A tree someone else wrote, with links out of it: to a credential, and
	// a named file that is itself a link.
	secret := filepath.Join(dir, "credentials.rego")
	authztest.WriteFile(t, secret, "package authz\n\nallow := true # s3cr3t\n")
	linked := filepath.Join(dir, "linked")
	authztest.WriteFile(t, filepath.Join(linked, "authz.rego"), "package authz\n\nallow := false\n")
	if err := os.Symlink(secret, filepath.Join(linked, "leak.rego")); err != nil {
		t.Fatal(err)
	}
	namedLink := filepath.Join(dir, "named.rego")
	if err := os.Symlink(good, namedLink); err != nil {
		t.Fatal(err)
	}
	notes := filepath.Join(dir, "notes.txt")
	authztest.WriteFile(t, notes, "not a policy\n")
	fakeBundle := filepath.Join(dir, "bundle.tar.gz")
	authztest.WriteFile(t, fakeBundle, "not gzip'd\n")
	noEntry := filepath.Join(dir, "noentry")
	authztest.WriteFile(t, filepath.Join(noEntry, "lib.rego"), "package lib\n\nx := 1\n")
	authztest.WriteFile(t, filepath.Join(noEntry, "lib_test.rego"), "package lib_test\n\ntest_x if data.lib.x == 1\n")
	// allow only in a test file: the policy alone has none, and Load refuses it.
	allowInTest := filepath.Join(dir, "allowintest")
	authztest.WriteFile(t, filepath.Join(allowInTest, "authz.rego"), "package authz\n\nx := 1\n")
	authztest.WriteFile(t, filepath.Join(allowInTest, "authz_test.rego"), "package authz\n\nallow if false\n\ntest_x if x == 1\n")
	reserved := filepath.Join(dir, "reserved")
	authztest.WriteFile(t, filepath.Join(reserved, "authz.rego"), "package authz\n\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(reserved, "entry.rego"), "package verdict_entrypoint\n\ndecision := {\"allow\": true}\n")

	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string // a line of stderr, matched at its start
	}{
		{name: "check a .rego file", args: []string{"check", good}},
		{name: "check without a path", args: []string{"check"}, wantCode: 2, wantStderr: "verdict: name the policies"},
		{name: "test without a path", args: []string{"test"}, wantCode: 2, wantStderr: "verdict: name the policies"},
		{name: "decide without policies names its flags", args: []string{"decide", "--action", "read"}, wantCode: 2,
			wantStderr: "verdict: name the policies: --policies with a directory (. for this one), a .rego file or a bundle file, or a --config with policy.dir or policy.bundle_file"},
		{name: "replay without a candidate names its flags", args: []string{"replay", "--log", filepath.Join(dir, "decisions.jsonl")}, wantCode: 2,
			wantStderr: "verdict: name the candidate: --policies with a directory (. for this one) or a .rego file, or --bundle with a bundle file"},
		{name: "check a missing path", args: []string{"check", filepath.Join(dir, "missing")}, wantCode: 2, wantStderr: "verdict: stat "},
		{name: "check refuses a link out of the directory", args: []string{"check", linked}, wantCode: 2,
			wantStderr: "verdict: " + filepath.Join(linked, "leak.rego") + " is a link out of the policy directory: pass --follow-links to read it"},
		{name: "test refuses a link out of the directory", args: []string{"test", linked}, wantCode: 2,
			wantStderr: "verdict: " + filepath.Join(linked, "leak.rego") + " is a link out of the policy directory"},
		{name: "decide refuses a link out of the directory", args: []string{"decide", "--policies", linked, "--action", "read"}, wantCode: 2,
			wantStderr: "verdict: " + filepath.Join(linked, "leak.rego") + " is a link out of the policy directory"},
		{name: "replay refuses a link out of the directory", args: []string{"replay", "--log", filepath.Join(dir, "decisions.jsonl"),
			"--policies", linked}, wantCode: 2, wantStderr: "verdict: " + filepath.Join(linked, "leak.rego") + " is a link out of the policy directory"},
		{name: "check follows it when told", args: []string{"check", "--follow-links", linked}},
		{name: "check refuses a named file that is a link", args: []string{"check", namedLink}, wantCode: 2,
			wantStderr: "verdict: " + namedLink + " is a symbolic link"},
		{name: "check reads a named link when told", args: []string{"check", "--follow-links", namedLink}},
		{name: "check a file that is no policy", args: []string{"check", notes}, wantCode: 2,
			wantStderr: "verdict: " + notes + " is neither a directory, a .rego file nor a bundle"},
		{name: "check a bundle file that is not gzip'd", args: []string{"check", fakeBundle}, wantCode: 2,
			wantStderr: "verdict: " + fakeBundle + " is not a bundle: its content is not gzip'd"},
		{name: "a syntax error in a directory", args: []string{"check", filepath.Dir(syntax)}, wantCode: 1,
			wantStderr: "authz.rego:5:1: rego_parse_error: "},
		{name: "a syntax error in a file", args: []string{"check", syntax}, wantCode: 1, wantStderr: "authz.rego:5:1: rego_parse_error: "},
		{name: "a type error", args: []string{"check", filepath.Dir(typeErr)}, wantCode: 1,
			wantStderr: "authz.rego:3:10: rego_type_error: undefined ref: input.subjet.id"},
		{name: "a contract error", args: []string{"check", contract}, wantCode: 1,
			wantStderr: "authz.rego:5:1: verdict_contract_error: data.authz.headers has type object<x-n: number>"},
		{name: "test reports a syntax error the same way", args: []string{"test", filepath.Dir(syntax)}, wantCode: 1,
			wantStderr: "authz.rego:5:1: rego_parse_error: "},
		// A policy set whose tests pass must also load: test refuses what
		// Load refuses, not only what does not compile.
		{name: "test reports a contract error", args: []string{"test", contract}, wantCode: 1,
			wantStderr: "authz.rego:5:1: verdict_contract_error: data.authz.headers has type object<x-n: number>"},
		{name: "test without the entrypoint package", args: []string{"test", noEntry}, wantCode: 1,
			wantStderr: `verdict: no module declares the entrypoint package "authz" (the modules declare package lib): pass --entrypoint lib`},
		{name: "test judges the policy without its test files", args: []string{"test", allowInTest}, wantCode: 1,
			wantStderr: "authz.rego:1: verdict_contract_error: package authz defines no allow rule"},
		{name: "check judges the policy without its test files", args: []string{"check", allowInTest}, wantCode: 1,
			wantStderr: "authz.rego:1: verdict_contract_error: package authz defines no allow rule"},
		{name: "check refuses the reserved package", args: []string{"check", reserved}, wantCode: 1,
			wantStderr: "entry.rego:1: package verdict_entrypoint is reserved by Verdict"},
		{name: "test refuses the reserved package", args: []string{"test", reserved}, wantCode: 1,
			wantStderr: "entry.rego:1: package verdict_entrypoint is reserved by Verdict"},
		{name: "decide reports a syntax error the same way, as an error", args: []string{"decide", "--policies", syntax, "--action", "read"}, wantCode: 2,
			wantStderr: "authz.rego:5:1: rego_parse_error: "},
		{name: "decide on a .rego file", args: []string{"decide", "--policies", good, "--action", "read"}},
		// decide's and replay's exit status 1 is an answer (a deny, a flip):
		// a policy that does not load must not pass for one.
		{name: "replay reports a candidate that does not load as an error", args: []string{"replay", "--log", filepath.Join(dir, "decisions.jsonl"),
			"--policies", filepath.Dir(syntax)}, wantCode: 2, wantStderr: "authz.rego:5:1: rego_parse_error: "},
		{name: "decide reports a contract error as an error", args: []string{"decide", "--policies", contract, "--action", "read"}, wantCode: 2,
			wantStderr: "authz.rego:5:1: verdict_contract_error: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := verdict(t, tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d\nstdout %s\nstderr %s", code, tc.wantCode, out, stderr)
			}
			if tc.wantStderr == "" {
				return
			}
			found := false
			for _, line := range strings.Split(stderr, "\n") {
				found = found || strings.HasPrefix(line, tc.wantStderr) ||
					strings.Contains(line, "/"+tc.wantStderr) && !strings.HasPrefix(line, "verdict:")
			}
			if !found {
				t.Errorf("stderr %q has no line starting %q", stderr, tc.wantStderr)
			}
		})
	}
}

// TestDecideKeyOutageIsAnError: an issuer whose key set cannot be fetched
// makes decide fail (exit 2, the cause on stderr), not print a deny.
func TestDecideKeyOutageIsAnError(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), `policy:
  dir: `+filepath.Join("..", "..", "..", "policies")+`
tokens:
  jwks_persist_dir: "off"
  issuers:
    - issuer: `+is.Name+`
      audiences: [`+is.Audience+`]
      algorithms: [ES256]
      jwks_url: `+down.URL+`
`)
	abs, _ := filepath.Abs("../../policies")
	code, out, stderr := verdict(t, "decide", "--config", filepath.Join(dir, "verdict.yaml"), "--policies", abs,
		"--token", is.Mint(t, nil), "--action", "orders:read")
	if code != 2 || out != "" || !strings.Contains(stderr, "keys_unavailable") {
		t.Fatalf("exit %d, stdout %s, stderr %s; want exit 2 naming keys_unavailable", code, out, stderr)
	}
}

func writeBundle(t *testing.T, path string, files map[string]string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for name, content := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, path, buf.String())
}

// TestDecideExplainInputTime: --explain names the rules that decided (text
// on stderr, or json in the decision), print() reaches stderr, --input
// evaluates a whole document (and says no token was verified), and --time
// fixes the clock a time-of-day rule reads.
func TestDecideExplainInputTime(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "hours.rego"), `package authz

default allow := false

allow if {
	print("hour is", hour)
	hour >= 9
	hour < 17
}

hour := time.clock(time.parse_rfc3339_ns(input.context.time))[0]
`)
	doc := filepath.Join(dir, "input.json")
	authztest.WriteFile(t, doc, `{"subject": {"authenticated": false}, "caller": {"authenticated": false, "method": "none"},
		"action": {"name": "orders:read"}, "resource": {}, "context": {"time": "2026-12-01T10:30:00Z", "request_id": "r1"}}`)

	code, out, stderr := verdict(t, "decide", "--policies", filepath.Join(dir, "hours.rego"), "--action", "orders:read",
		"--time", "2026-12-01T10:30:00Z", "--explain")
	if code != 0 || !strings.Contains(stderr, "hours.rego:6: hour is 10") || !strings.Contains(stderr, "hours.rego:5: authz.allow = true") {
		t.Fatalf("in office hours: exit %d\nstdout %s\nstderr %s", code, out, stderr)
	}
	if code, out, _ := verdict(t, "decide", "--policies", filepath.Join(dir, "hours.rego"), "--action", "orders:read",
		"--time", "2026-12-01T20:00:00Z"); code != 1 {
		t.Fatalf("after hours: exit %d, want a deny\n%s", code, out)
	}
	code, out, stderr = verdict(t, "decide", "--policies", filepath.Join(dir, "hours.rego"), "--input", doc, "--explain=json")
	var d struct {
		Allow       bool `json:"allow"`
		Explanation []struct {
			Rule     string `json:"rule"`
			Location string `json:"location"`
			Value    any    `json:"value"`
		} `json:"explanation"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil || code != 0 || !d.Allow || len(d.Explanation) == 0 {
		t.Fatalf("--input --explain=json: exit %d, %v\n%s\n%s", code, err, out, stderr)
	}
	if !strings.Contains(stderr, "no token was verified") {
		t.Errorf("--input does not say the document was taken as written: %s", stderr)
	}
	if code, _, _ := verdict(t, "decide", "--policies", dir, "--action", "x", "--time", "noon"); code != 2 {
		t.Errorf("a bad --time: exit %d, want 2", code)
	}
}

// TestTestReports: --coverage names exactly the lines no test ran as
// file:row-row (test files count in no figure), --json carries the same,
// print() output reaches stderr after the test's name, and --bench reports
// time and allocations per run.
func TestTestReports(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p.rego"), `package authz

default allow := false

allow if {
	print("action is", input.action.name)
	input.action.name == "read"
}

reasons contains "admin" if {
	input.action.name == "admin"
	input.subject.id == "root"
}
`)
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p_test.rego"), `package authz_test

import data.authz

test_read if {
	print("checking read")
	authz.allow with input as {"action": {"name": "read"}}
}
`)
	code, out, stderr := verdict(t, "test", dir, "--coverage")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, stderr)
	}
	// Files are named as the command line reaches them: from dir.
	p := filepath.Join(dir, "authz", "p.rego")
	// Lines 3 (default never used), 10-12 (no test asks for admin).
	for _, want := range []string{"coverage: 42.9% (3 of 7 lines)", "not covered:\n  " + p + ":3\n  " + p + ":10-12\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--coverage output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "p_test.rego") {
		t.Errorf("the test file counts in coverage:\n%s", out)
	}
	for _, want := range []string{"data.authz_test.test_read: checking read\n", "data.authz_test.test_read: action is read\n"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks print output %q:\n%s", want, stderr)
		}
	}

	code, out, _ = verdict(t, "test", dir, "--coverage", "--json")
	var rep struct {
		Passed   int
		Tests    []struct{ Name, Location, Result string }
		Coverage struct {
			Percent float64
			Files   []struct {
				File       string
				NotCovered []string `json:"not_covered"`
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("--json: exit %d, %v:\n%s", code, err, out)
	}
	if rep.Passed != 1 || rep.Tests[0].Location != filepath.Join(dir, "authz", "p_test.rego")+":5" || rep.Tests[0].Result != "pass" ||
		len(rep.Coverage.Files) != 1 || !slices.Equal(rep.Coverage.Files[0].NotCovered, []string{p + ":3", p + ":10-12"}) {
		t.Errorf("--json report %+v", rep)
	}

	code, out, _ = verdict(t, "test", dir, "--bench")
	if code != 0 || !strings.Contains(out, "data.authz_test.test_read") || !strings.Contains(out, "ns/op") || !strings.Contains(out, "allocs/op") {
		t.Errorf("--bench: exit %d\n%s", code, out)
	}
	if code, _, stderr := verdict(t, "test", dir, "--bench", "--coverage"); code != 2 || !strings.Contains(stderr, "--bench cannot") {
		t.Errorf("--bench --coverage: exit %d %s", code, stderr)
	}
}

// TestVersion: verdict version, --version and --json agree, and a stamped
// version (-ldflags -X main.version=...) is the one printed.
func TestVersion(t *testing.T) {
	code, out, _ := verdict(t, "version")
	if code != 0 || !strings.HasPrefix(out, "verdict dev") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: exit %d %q", code, out)
	}
	old := version
	version = "v1.2.3"
	defer func() { version = old }()
	_, out, _ = verdict(t, "--version")
	if !strings.HasPrefix(out, "verdict v1.2.3") {
		t.Errorf("--version: %q", out)
	}
	_, out, _ = verdict(t, "version", "--json")
	var bi struct{ Version, GoVersion string }
	if err := json.Unmarshal([]byte(out), &bi); err != nil || bi.Version != "v1.2.3" {
		t.Errorf("version --json: %v %q", err, out)
	}
}

// TestDecideUsesTheConfiguredEngine: decide --config runs the engine serve
// would: with policy.require_tests, a policy whose tests fail does not load
// (exit 2, the failing test named), where decide used to answer with it.
func TestDecideUsesTheConfiguredEngine(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "policies", "authz.rego"), "package authz\n\nallow if input.action.name == \"read\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "policies", "authz_test.rego"),
		"package authz_test\n\ntest_write_allowed if data.authz.allow with input.action.name as \"write\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), "policy:\n  dir: policies\n  require_tests: true\n")
	code, out, stderr := verdict(t, "decide", "--config", filepath.Join(dir, "verdict.yaml"), "--action", "read")
	if code != 2 || out != "" || !strings.Contains(stderr, "test_write_allowed") {
		t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 naming the failing test", code, out, stderr)
	}
}

// TestNetworkOffByDefault: test, decide and replay evaluate policies that
// may be someone else's, so a call of http.send (or net.lookup_ip_addr) is
// a problem at the call, with a hint, and reaches nothing; --allow-net lets
// it through. A test that replaces http.send with a mock, without the
// policy calling it, needs no flag.
func TestNetworkOffByDefault(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok": true}`))
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	calls := filepath.Join(dir, "calls")
	authztest.WriteFile(t, filepath.Join(calls, "authz.rego"), "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \""+srv.URL+"\"}).body.ok\n")
	authztest.WriteFile(t, filepath.Join(calls, "authz_test.rego"), "package authz_test\n\ntest_allow if data.authz.allow\n")
	mocks := filepath.Join(dir, "mocks")
	authztest.WriteFile(t, filepath.Join(mocks, "authz.rego"), "package authz\n\nallow if input.action.name == \"read\"\n")
	authztest.WriteFile(t, filepath.Join(mocks, "authz_test.rego"),
		"package authz_test\n\nmock(_) := {}\n\ntest_allow if data.authz.allow with input.action.name as \"read\" with http.send as mock\n")
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
		wantHits   int64
	}{
		{name: "test", args: []string{"test", calls}, wantCode: 1, wantStderr: "authz.rego:3:10: verdict_network_error: http.send reaches the network"},
		{name: "decide", args: []string{"decide", "--policies", calls, "--action", "read"}, wantCode: 2, wantStderr: "verdict_network_error"},
		{name: "replay", args: []string{"replay", "--log", filepath.Join(dir, "none.jsonl"), "--policies", calls}, wantCode: 2, wantStderr: "verdict_network_error"},
		{name: "test with a mock", args: []string{"test", mocks}},
		{name: "test allowed", args: []string{"test", "--allow-net", calls}, wantHits: 1},
		{name: "decide allowed", args: []string{"decide", "--allow-net", "--policies", calls, "--action", "read"}, wantHits: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			code, out, stderr := verdict(t, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("exit %d, want %d; stderr %q, want %q; stdout %s", code, tc.wantCode, stderr, tc.wantStderr, out)
			}
			if tc.wantStderr != "" && !strings.Contains(stderr, "pass --allow-net") {
				t.Errorf("stderr %q gives no hint", stderr)
			}
			if got := hits.Load() - before; got != tc.wantHits {
				t.Errorf("the server got %d requests, want %d", got, tc.wantHits)
			}
		})
	}
}

// TestOutputEscaped: what a policy tree's author writes — print() output,
// a test file's name, a manifest's revision — reaches the terminal with
// its control and format characters escaped, never raw.
func TestOutputEscaped(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz.rego"), "package authz\n\nallow if input.action.name == \"read\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "a\x1b[31mb_test.rego"),
		"package authz_test\n\ntest_print if {\n\tprint(\"x\\r\\u001b[2KPASS: 9/9\\u202e\")\n\tdata.authz.allow with input.action.name as \"read\"\n}\n")
	authztest.WriteFile(t, filepath.Join(dir, ".manifest"), "{\"revision\": \"rev\\u001b[2K\\rok: 9 modules\"}")
	// An error naming a link out of the tree names it escaped too.
	linked := t.TempDir()
	if err := os.Symlink(filepath.Join(dir, "authz.rego"), filepath.Join(linked, "x\x1b[2J\rok: all good\u202e.rego")); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"test", "-v", "--coverage", dir}, {"check", dir}, {"check", linked}} {
		code, out, stderr := verdict(t, args...)
		if wantCode := map[bool]int{true: 2, false: 0}[args[1] == linked]; code != wantCode {
			t.Fatalf("%v: exit %d\n%s\n%s", args, code, out, stderr)
		}
		for _, raw := range []string{"\x1b", "\r", "\u202e"} {
			if strings.Contains(out+stderr, raw) {
				t.Errorf("%v printed %q raw:\nstdout %q\nstderr %q", args, raw, out, stderr)
			}
		}
	}
}

// TestDecideInputRead: --input takes one JSON object, as the server takes
// a body: trailing data and duplicate member names are usage errors, and
// so is a document over 64 MiB, refused once that much is read (not read
// whole first: /dev/zero would never end).
func TestDecideInputRead(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow if input.action.name == \"read\"\n")
	for _, tc := range []struct{ name, doc, want string }{
		{name: "trailing data", doc: `{"action": {"name": "read"}} {"action": {"name": "write"}}`, want: "not one JSON value"},
		{name: "duplicate names", doc: `{"action": {"name": "write", "name": "read"}}`, want: "duplicate member names"},
		{name: "null", doc: `null`, want: "not a JSON object"},
	} {
		file := filepath.Join(dir, tc.name+".json")
		authztest.WriteFile(t, file, tc.doc)
		if code, _, stderr := verdict(t, "decide", "--policies", policy, "--input", file); code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want 2 saying %q", tc.name, code, stderr, tc.want)
		}
	}
	big := filepath.Join(dir, "big.json")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxInputBytes + 1); err != nil { // sparse: no disk
		t.Fatal(err)
	}
	f.Close()
	if code, _, stderr := verdict(t, "decide", "--policies", policy, "--input", big); code != 2 || !strings.Contains(stderr, "larger than 64 MiB") {
		t.Errorf("a document over the bound: exit %d, stderr %q", code, stderr)
	}
}

// TestPrintDemoWarnsBeyondLoopback: the demo's instructions warn when it
// listens beyond this machine (anyone reaching it can ask, read its status
// and metrics), and only then.
func TestPrintDemoWarnsBeyondLoopback(t *testing.T) {
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr net.Addr
		warn bool
	}{
		{addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8181}},
		{addr: &net.TCPAddr{IP: net.IPv6loopback, Port: 8181}},
		{addr: &net.TCPAddr{IP: net.IPv4zero, Port: 8181}, warn: true},
		{addr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 8181}, warn: true},
	} {
		var b strings.Builder
		if err := (demo{addr: tc.addr, minter: m, ready: true, embedded: true}).print(&b); err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(b.String(), "beyond this machine"); got != tc.warn {
			t.Errorf("%v: warned %v, want %v", tc.addr, got, tc.warn)
		}
	}
}

// TestReplayNothingIsAnError: replaying a log with no decision to replay
// (empty, blank, or without inputs) is an error, exit 2, saying that
// nothing was replayed: a gate in CI fed an empty or mistaken log passed
// (exit 0: nothing flipped). The report is still printed.
func TestReplayNothingIsAnError(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow := true\n")
	for _, tc := range []struct{ name, log string }{
		{name: "empty", log: ""},
		{name: "blank lines", log: "\n\n"},
		{name: "no inputs", log: `{"decision_id":"d1","time":"2026-01-01T00:00:00Z","allow":false,"reasons":["token: expired"]}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "decisions.jsonl")
			authztest.WriteFile(t, log, tc.log)
			for _, args := range [][]string{{}, {"--json"}} {
				code, out, stderr := verdict(t, append([]string{"replay", "--log", log, "--policies", policy}, args...)...)
				if code != 2 || !strings.Contains(stderr, "verdict: nothing was replayed: the log holds no decision with its input") || !strings.Contains(out, "skipped") {
					t.Errorf("%q: exit %d, stdout %q, stderr %q; want 2 and the report, saying nothing was replayed", args, code, out, stderr)
				}
			}
		})
	}
}

// TestTokenTTLPositive: verdict token refuses a lifetime that would mint
// a token already expired.
func TestTokenTTLPositive(t *testing.T) {
	key := filepath.Join(t.TempDir(), "dev.key")
	for _, ttl := range []string{"0s", "-1h"} {
		if code, out, stderr := verdict(t, "token", "--dev-key", key, "--ttl", ttl); code != 2 || out != "" || !strings.Contains(stderr, "positive lifetime") {
			t.Errorf("--ttl %s: exit %d, stdout %q, stderr %q; want a usage error", ttl, code, out, stderr)
		}
	}
}

// TestLinkedPolicyDirRefused: a relative policy path with a symbolic link
// in it (a pull request turning policies/ into a link to ..) is refused:
// the read, and what counts as inside the tree, would be somewhere else.
// A link given as an absolute path's last part is refused too.
func TestLinkedPolicyDirRefused(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "outside", "authz", "authz.rego"), "package authz\n\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(dir, "repo", "real", "authz.rego"), "package authz\n\nallow := true\n")
	if err := os.Symlink(filepath.Join("..", "outside"), filepath.Join(dir, "repo", "policies")); err != nil {
		t.Fatal(err)
	}
	t.Chdir(filepath.Join(dir, "repo"))
	for _, args := range [][]string{
		{"check", "policies"},
		{"check", "policies/authz"},
		{"test", "./policies"},
		{"check", filepath.Join(dir, "repo", "policies")},
		// An absolute path below the working directory is the tree's all
		// the way down ($GITHUB_WORKSPACE/policies/authz in CI).
		{"check", filepath.Join(dir, "repo", "policies", "authz")},
		{"test", filepath.Join(dir, "repo", "policies", "authz")},
	} {
		if code, _, stderr := verdict(t, args...); code != 2 || !strings.Contains(stderr, "is a symbolic link") {
			t.Errorf("%v: exit %d, stderr %q; want the link refused", args, code, stderr)
		}
	}
	if code, _, stderr := verdict(t, "check", "real"); code != 0 {
		t.Errorf("a real directory: exit %d, %s", code, stderr)
	}
	// Links above the working directory are the system's, not the tree's.
	if err := os.Symlink("repo", filepath.Join(dir, "checkout")); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := verdict(t, "check", filepath.Join(dir, "checkout", "real")); code != 0 {
		t.Errorf("a link outside the working directory: exit %d, %s", code, stderr)
	}
	// ".." after a name steps back through it as the kernel resolves it:
	// with inner a link into decoy/deep, inner/.. is decoy, whose a is a
	// link out of the tree that the check of inner/.. (cleaned to .) missed.
	authztest.WriteFile(t, filepath.Join(dir, "repo", "decoy", "deep", "x"), "")
	if err := os.Symlink(filepath.Join("decoy", "deep"), filepath.Join(dir, "repo", "inner")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "outside", "authz"), filepath.Join(dir, "repo", "decoy", "a")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"inner/..", "real/../inner/.."} {
		if code, _, stderr := verdict(t, "check", p); code != 2 || !strings.Contains(stderr, "steps back through a directory") {
			t.Errorf("check %s: exit %d, stderr %q; want it refused", p, code, stderr)
		}
	}
	if code, _, stderr := verdict(t, "check", "--follow-links", "policies/authz"); code != 0 {
		t.Errorf("--follow-links: exit %d, %s", code, stderr)
	}
}

// TestTokenForConfiguredIssuer: verdict token --public-key prints what an
// issuer's public_key_file takes, and --iss/--aud mint for that issuer, so
// that a configuration of one's own can be tried with development tokens.
// A token for another issuer or audience is still refused.
func TestTokenForConfiguredIssuer(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "dev.key")
	code, pub, stderr := verdict(t, "token", "--dev-key", key, "--public-key")
	if code != 0 || !strings.HasPrefix(pub, "-----BEGIN PUBLIC KEY-----") || !strings.Contains(stderr, "created development key") {
		t.Fatalf("--public-key: exit %d, stdout %q, stderr %q", code, pub, stderr)
	}
	authztest.WriteFile(t, filepath.Join(dir, "keys", "dev.pem"), pub)
	authztest.WriteFile(t, filepath.Join(dir, "policies", "authz", "p.rego"), "package authz\n\nallow if input.subject.claims.sub == \"alice\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), `policy:
  dir: policies
tokens:
  issuers:
    - issuer: https://dev.example
      audiences: [orders-api]
      algorithms: [EdDSA]
      public_key_file: keys/dev.pem
`)
	cfg := filepath.Join(dir, "verdict.yaml")
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--iss", "https://dev.example", "--aud", "orders-api"}, 0},
		{[]string{"--iss", "https://dev.example", "--aud", "other,orders-api"}, 0},
		{[]string{"--iss", "https://dev.example"}, 1},                          // audience verdict
		{[]string{"--aud", "orders-api"}, 1},                                   // issuer verdict-dev
		{[]string{"--iss", "https://dev.example", "--aud", "other"}, 1},        // another audience
		{[]string{"--iss", "https://other.example", "--aud", "orders-api"}, 1}, // another issuer
	} {
		_, tok, _ := verdict(t, append([]string{"token", "--dev-key", key, "--sub", "alice"}, tc.args...)...)
		if code, out, stderr := verdict(t, "decide", "--config", cfg, "--action", "x", "--token", strings.TrimSpace(tok)); code != tc.want {
			t.Errorf("token %q: exit %d, want %d\n%s%s", tc.args, code, tc.want, out, stderr)
		}
	}
}

// TestProblemsNamedFromWorkingDirectory: check names a file as the command
// line reached it (dir/authz/a.rego:3:11, for an editor or a CI annotation to
// open), whether given the directory or the file; the revision stays the
// one a server reading the directory reports.
func TestProblemsNamedFromWorkingDirectory(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "authz", "a.rego")
	authztest.WriteFile(t, file, "package authz\n\nallow if {\n")
	for _, arg := range []string{dir, file} {
		if code, _, stderr := verdict(t, "check", arg); code != 1 || !strings.HasPrefix(stderr, file+":3:11:") {
			t.Errorf("check %s: exit %d, stderr %q; want 1 naming %s:3:11", arg, code, stderr, file)
		}
	}
	// A data file that does not decode is a problem in the policy too.
	authztest.WriteFile(t, file, "package authz\n\nallow := true\n")
	data := filepath.Join(dir, "data.json")
	authztest.WriteFile(t, data, "{\"a\": [\n}")
	if code, _, stderr := verdict(t, "check", dir); code != 1 || !strings.HasPrefix(stderr, data+":2:1: verdict_data_error: ") {
		t.Errorf("check with a broken data.json: exit %d, stderr %q; want 1 naming %s:2:1", code, stderr, data)
	}
	authztest.WriteFile(t, data, "{}")
	snap, err := bundles.ReadDir(dir, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := verdict(t, "check", dir); code != 0 || !strings.Contains(out, "revision "+snap.Revision) {
		t.Errorf("check %s: exit %d, %s%s; want revision %s", dir, code, out, stderr, snap.Revision)
	}
}

// TestBenchWithFailingTest: test --bench benchmarks the tests that pass and
// reports the others as failed (exit 1); OPA's benchmark of a failing test
// ended the process with a panic.
func TestBenchWithFailingTest(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p.rego"), "package authz\n\nallow if input.action.name == \"read\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p_test.rego"), `package authz_test

import data.authz

test_read if authz.allow with input as {"action": {"name": "read"}}

test_write if authz.allow with input as {"action": {"name": "write"}}

test_error if 1 / 0
`)
	code, out, stderr := verdict(t, "test", dir, "--bench")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (tests failed)\n%s\n%s", code, out, stderr)
	}
	for _, line := range strings.Split(out, "\n") {
		benched := strings.Contains(line, "ns/op")
		switch {
		case strings.Contains(line, "test_read") && !benched:
			t.Errorf("the passing test is not benchmarked: %q", line)
		case (strings.Contains(line, "test_write") || strings.Contains(line, "test_error")) && benched:
			t.Errorf("a failing test is benchmarked: %q", line)
		}
	}
	for _, name := range []string{"test_read", "test_write", "test_error"} {
		if !strings.Contains(out, name) {
			t.Errorf("%s is not reported:\n%s", name, out)
		}
	}
}

// TestPrintDemoLabelsOnlyTheDefaults: the demo labels its requests with
// the answers of the embedded policies only; for policies of one's own
// (--policies) the labels say what is asked, not what will be answered.
func TestPrintDemoLabelsOnlyTheDefaults(t *testing.T) {
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8181}
	for _, embedded := range []bool{true, false} {
		var b strings.Builder
		if err := (demo{addr: addr, minter: m, ready: true, embedded: embedded}).print(&b); err != nil {
			t.Fatal(err)
		}
		out := b.String()
		if claims := strings.Contains(out, "# allow: a viewer may read orders") && strings.Contains(out, "# deny:"); claims != embedded {
			t.Errorf("embedded %v: labels claim answers: %v\n%s", embedded, claims, out)
		}
		if strings.Count(out, "curl ") != 4 {
			t.Errorf("embedded %v: want four requests\n%s", embedded, out)
		}
	}
}

// TestTokenClaimsAsSaid: --claim may not set a claim that has a flag of its
// own (it overrode --sub while the summary still named the flag's value,
// and dropped --roles); an exp given as a claim is what the summary says.
func TestTokenClaimsAsSaid(t *testing.T) {
	key := filepath.Join(t.TempDir(), "dev.key")
	for _, claim := range []string{"sub=bob", "iss=x", "aud=y", `roles=["admin"]`, "azp=svc"} {
		if code, out, stderr := verdict(t, "token", "--dev-key", key, "--claim", claim); code != 2 || out != "" || !strings.Contains(stderr, "use --") {
			t.Errorf("--claim %s: exit %d, stdout %q, stderr %q; want a usage error naming the flag", claim, code, out, stderr)
		}
	}
	code, out, stderr := verdict(t, "token", "--dev-key", key, "--claim", "exp=1")
	if code != 0 || out == "" || !strings.Contains(stderr, "exp 1 as given") || strings.Contains(stderr, "expires in") {
		t.Errorf("--claim exp=1: exit %d, stderr %q; want the summary to give exp 1", code, stderr)
	}
}

// TestPolicyDirNamedLikeReserved: a policy directory whose name begins
// with "verdict:" (the engine's reserved module prefix) is read; naming
// files from the working directory made every module's name reserved.
func TestPolicyDirNamedLikeReserved(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "verdict:pol", "authz", "p.rego"), "package authz\n\nallow := true\n")
	t.Chdir(dir)
	if code, out, stderr := verdict(t, "check", "verdict:pol"); code != 0 || !strings.HasPrefix(out, "ok: ") {
		t.Errorf("check verdict:pol: exit %d, %s%s", code, out, stderr)
	}
}

// TestBenchTestsOfOneName: tests that share a name (the tester renames the
// second test_read#01, in no fixed order) are benchmarked when they pass
// and never when they fail; selecting them by name benchmarked a failing
// one (a panic inside OPA) or skipped a passing one.
func TestBenchTestsOfOneName(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p.rego"), "package authz\n\ndefault allow := false\n\nallow if input.action.name == \"read\"\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "a_test.rego"), "package authz\n\ntest_read if allow with input as {\"action\": {\"name\": \"read\"}}\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "b_test.rego"), "package authz\n\ntest_read if not allow with input as {\"action\": {\"name\": \"read\"}}\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "c_test.rego"), "package authz\n\ntest_read if allow with input as {\"action\": {\"name\": \"read\"}}\n")
	for range 2 { // the renaming order differs from run to run
		code, out, stderr := verdict(t, "test", dir, "--bench")
		if code != 1 {
			t.Fatalf("exit %d, want 1 (one test fails)\n%s\n%s", code, out, stderr)
		}
		if n := strings.Count(out, " ns/op"); n != 2 {
			t.Errorf("%d benchmarks, want the two passing tests\n%s", n, out)
		}
	}
}

// TestDecideTimeWithInput: --time sets input.context.time in an --input
// document too, as its help says (the document was evaluated as written,
// without it); a token refused as of --time says why.
func TestDecideTimeWithInput(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow if time.parse_rfc3339_ns(input.context.time) < time.parse_rfc3339_ns(\"2026-12-01T12:00:00Z\")\n")
	input := filepath.Join(dir, "case.json")
	authztest.WriteFile(t, input, `{"action": {"name": "read"}, "context": {}}`)
	for at, want := range map[string]int{"2026-12-01T10:00:00Z": 0, "2026-12-01T14:00:00Z": 1} {
		if code, out, stderr := verdict(t, "decide", "--policies", policy, "--input", input, "--time", at); code != want {
			t.Errorf("--time %s: exit %d, want %d\n%s%s", at, code, want, out, stderr)
		}
	}
	key := filepath.Join(dir, "dev.key")
	_, tok, _ := verdict(t, "token", "--dev-key", key, "--ttl", "1h")
	code, _, stderr := verdict(t, "decide", "--policies", policy, "--dev-key", key, "--token", strings.TrimSpace(tok), "--action", "read", "--time", "2020-01-01T00:00:00Z")
	if code != 1 || !strings.Contains(stderr, "checked as of --time too") {
		t.Errorf("a token not yet valid at --time: exit %d, stderr %q", code, stderr)
	}
}

// TestTestPanickingBuiltin: verdict test reports a test whose built-in
// panics inside OPA as a problem at the test (exit 1); the panic ended the
// command with a goroutine dump.
func TestTestPanickingBuiltin(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p.rego"), "package authz\n\nallow := true\n")
	test := filepath.Join(dir, "authz", "p_test.rego")
	authztest.WriteFile(t, test, "package authz_test\n\ntest_lsh if bits.lsh(1, 1000000000000000000) > 0\n")
	if code, _, stderr := verdict(t, "test", dir); code != 1 || !strings.Contains(stderr, test+":3:1: verdict_test_error: ") {
		t.Errorf("exit %d, stderr %q; want 1 and the problem at the test", code, stderr)
	}
}

// TestTestPrintsOnce: what a test prints (in the test, in the policy it
// calls) appears on stderr once, after the test's name, whatever the
// report: the panic guard's run of each test prints nothing, and --bench
// keeps what the test's run printed (the benchmark that replaced its
// result had lost it).
func TestTestPrintsOnce(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p.rego"), "package authz\n\nallow if {\n\tprint(\"in allow\")\n\tinput.action.name == \"read\"\n}\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "p_test.rego"),
		"package authz_test\n\nimport data.authz\n\ntest_a if {\n\tprint(\"hello\")\n\tauthz.allow with input as {\"action\": {\"name\": \"read\"}}\n}\n")
	for _, args := range [][]string{{}, {"-v"}, {"--coverage"}, {"--json"}, {"--bench"}} {
		code, out, stderr := verdict(t, append([]string{"test", dir}, args...)...)
		if code != 0 {
			t.Fatalf("%q: exit %d\n%s%s", args, code, out, stderr)
		}
		for _, line := range []string{"data.authz_test.test_a: hello\n", "data.authz_test.test_a: in allow\n"} {
			if n := strings.Count(stderr, line); n != 1 {
				t.Errorf("%q: %q printed %d times, want once; stderr:\n%s", args, line, n, stderr)
			}
		}
	}
}

// TestTestAllSkippedIsNoneRan: a tree whose tests are all todo_ (a pull
// request renaming every test_ away) ran none, and exits 1 as a tree
// without tests does; it passed.
func TestTestAllSkippedIsNoneRan(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "authz.rego"), "package authz\n\ndefault allow := false\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "authz_test.rego"),
		"package authz_test\n\nimport data.authz\n\ntodo_test_deny if not authz.allow\n")
	if code, out, stderr := verdict(t, "test", dir); code != exitDeny || !strings.Contains(stderr, "no tests ran") {
		t.Errorf("every test skipped: exit %d\n%s\n%s; want 1, no tests ran", code, out, stderr)
	}
}

// TestTestFileMayNotExtendPolicy: a rule in a *_test.rego file that adds to
// a rule of the policy (here, the set of blocked actions) changed the
// policy under test: its tests passed while the policy served, without
// test files, allowed what they said is denied. It is a problem now, at
// the test file's rule; a helper of its own name is fine.
func TestTestFileMayNotExtendPolicy(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "data.json"), `{"config": {"blocked": []}}`)
	authztest.WriteFile(t, filepath.Join(dir, "authz", "authz.rego"), "package authz\n\ndefault allow := false\n\n"+
		"blocked contains a if some a in data.config.blocked\n\nallow if {\n\tinput.subject.authenticated == true\n\tnot input.action.name in blocked\n}\n")
	authztest.WriteFile(t, filepath.Join(dir, "authz", "authz_test.rego"), "package authz_test\n\nimport data.authz\n\n"+
		"test_delete_is_denied if not authz.allow with input as {\"subject\": {\"authenticated\": true}, \"action\": {\"name\": \"orders:delete\"}}\n")
	fixtures := filepath.Join(dir, "authz", "fixtures_test.rego")
	authztest.WriteFile(t, fixtures, "package authz\n\nblocked contains \"orders:delete\"\n")
	code, out, stderr := verdict(t, "test", dir)
	if code != exitDeny || !strings.Contains(stderr, "authz/fixtures_test.rego:3:1: verdict_test_error: a test file may not add to the policy's rule data.authz.blocked") {
		t.Errorf("test with a fixture extending the policy: exit %d\n%s\n%s", code, out, stderr)
	}
	authztest.WriteFile(t, fixtures, "package authz\n\ndelete_input := {\"subject\": {\"authenticated\": true}, \"action\": {\"name\": \"orders:delete\"}}\n")
	if code, out, stderr := verdict(t, "test", dir); code != exitDeny || !strings.Contains(out, "FAIL") {
		t.Errorf("a helper of its own name: exit %d\n%s\n%s; want the test to run and fail", code, out, stderr)
	}
}
