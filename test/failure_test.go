package test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestNotReady starts with a policy directory whose only policy is broken:
// the process serves (liveness 200) but is not ready, and every decision
// fails closed with 503 not_ready and "allow": false. Fixing the policy
// makes it ready without a restart.
func TestNotReady(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	policy := filepath.Join(f.Dir, "broken", "authz", "authz.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow if {\n")
	p := startVerdict(t, startOptions{NoReadyWait: true, Args: []string{"--config", f.writeConfig(t, `addr: 127.0.0.1:0
decision_log: off
policy:
  dir: broken
`+tokensYAML)}})

	// Give the first load attempt time to fail.
	eventually(t, 5*time.Second, func() string {
		if !strings.Contains(p.Stderr.String(), "authz.rego:") {
			return "no load error naming authz.rego in the log"
		}
		return ""
	})
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	if r := do(t, p.Client, http.MethodGet, p.Base+"/health/live", nil, nil); r.Status != http.StatusOK {
		t.Errorf("/health/live: %d, want 200 (live, not ready)", r.Status)
	}
	if r := do(t, p.Client, http.MethodGet, p.Base+"/health/ready", nil, nil); r.Status != http.StatusServiceUnavailable {
		t.Errorf("/health/ready: %d %s, want 503", r.Status, r.Body)
	}
	for _, body := range []string{`{"action":"catalog:read"}`, mustJSON(t, map[string]any{"token": viewer, "action": "orders:read"})} {
		checkErrorShape(t, p.decide(t, body), http.StatusServiceUnavailable, "not_ready")
	}
	r := do(t, p.Client, http.MethodGet, p.Base+"/v1/check", nil, map[string]string{
		"Authorization": "Bearer " + viewer, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42"})
	checkErrorShape(t, r, http.StatusServiceUnavailable, "not_ready")
	if r.Header.Get("X-Verdict-Subject") != "" {
		t.Errorf("a not_ready check answer carries X-Verdict-Subject")
	}
	if doc, raw := status(t, p); doc.Ready || !strings.Contains(raw, "authz.rego") {
		t.Errorf("/v1/status while not ready: %s", raw)
	}

	writeAtomic(t, policy, "package authz\n\nallow if input.action.name == \"orders:read\"\n")
	p.waitReady(t, time.Now().Add(reloadDeadline))
	if a := p.decide(t, `{"action":"orders:read"}`).JSON(t); !a.Allow {
		t.Errorf("after the fix: %+v, want allow", a)
	}
}

// TestPolicyErrors drives evaluation failures through the real process: a
// conflict between complete rules and an evaluation over the configured
// eval_timeout. Each answers 500 policy_error with "allow": false on both
// endpoints, and the process keeps serving.
func TestPolicyErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	authztest.WriteFile(t, filepath.Join(f.Dir, "failing", "authz", "authz.rego"), `package authz

default allow := false

allow if input.action.name == "ok:read"

allow := true if input.action.name == "conflict:read"

allow := false if input.action.name == "conflict:read"

allow if {
	input.action.name == "slow:read"
	some i in numbers.range(1, 4000)
	some j in numbers.range(1, 4000)
	i * j < 0
}
`)
	p := f.start(t, `addr: 127.0.0.1:0
decision_log: off
policy:
  dir: failing
limits:
  eval_timeout: 100ms
`+actionHeaderYAML+tokensYAML, nil)

	if a := p.decide(t, `{"action":"ok:read"}`).JSON(t); !a.Allow {
		t.Fatalf("ok:read: %+v, want allow", a)
	}
	for _, action := range []string{"conflict:read", "slow:read"} {
		t.Run(action, func(t *testing.T) {
			start := time.Now()
			checkErrorShape(t, p.decide(t, `{"action":"`+action+`"}`), http.StatusInternalServerError, "policy_error")
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("the decision took %v with eval_timeout 100ms", took)
			}
			r := do(t, p.Client, http.MethodGet, p.Base+"/v1/check", nil, map[string]string{"X-Verdict-Action": action})
			checkErrorShape(t, r, http.StatusInternalServerError, "policy_error")
			checkAlive(t, p)
		})
	}
}

// TestConfigErrors runs serve with broken configurations: each exits 2
// promptly, with a message naming the file, the line and the key.
func TestConfigErrors(t *testing.T) {
	t.Parallel()
	ca := authztest.NewCA(t, "config errors CA")
	server, other := loopbackServer(t, ca, "verdict"), loopbackServer(t, ca, "other")
	const tlsFiles = "addr: 127.0.0.1:0\ntls:\n  cert_file: s.pem\n  key_file: k.pem\n  client_auth: request\n  client_ca_file: ca.pem\n"
	for _, tc := range []struct {
		name   string
		config string
		files  map[string]string // written beside the configuration
		want   []string          // in stderr
	}{
		{name: "unknown key", config: "addr: 127.0.0.1:0\npolicy:\n  dirr: policies\n",
			want: []string{"verdict.yaml:3", "dirr"}},
		{name: "bad value", config: "addr: 127.0.0.1:0\ntls:\n  cert_file: a.pem\n  key_file: b.pem\n  client_auth: sometimes\n  client_ca_file: ca.pem\n",
			want: []string{"verdict.yaml:5", "tls.client_auth"}},
		{name: "missing key file", config: "addr: 127.0.0.1:0\ntokens:\n  issuers:\n    - issuer: https://i.test\n      audiences: [a]\n      algorithms: [ES256]\n      public_key_file: nope.pem\n",
			want: []string{"verdict.yaml", "tokens.issuers[0]", "nope.pem"}},
		{name: "CA file without a certificate", config: tlsFiles,
			files: map[string]string{"s.pem": string(server.CertPEM), "k.pem": string(server.KeyPEM), "ca.pem": "junk"},
			want:  []string{"verdict.yaml", "tls: client_ca_file ca.pem: no PEM certificates found"}},
		{name: "certificate and key not a pair", config: tlsFiles,
			files: map[string]string{"s.pem": string(server.CertPEM), "k.pem": string(other.KeyPEM), "ca.pem": string(ca.PEM())},
			want:  []string{"verdict.yaml", "tls: cert_file s.pem, key_file k.pem", "does not match"}},
		{name: "trust bundle without a certificate", config: "addr: 127.0.0.1:0\ncallers:\n  trusted_proxies: [127.0.0.1/32]\n  trust_bundle_file: ca.pem\n",
			files: map[string]string{"ca.pem": "junk"},
			want:  []string{"verdict.yaml", "callers.trust_bundle_file: ca.pem: no PEM certificates found"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "verdict.yaml")
			authztest.WriteFile(t, path, tc.config)
			for name, data := range tc.files {
				authztest.WriteFile(t, filepath.Join(dir, name), data)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, verdictBin, "serve", "--config", path)
			cmd.Env = append(os.Environ(), "HOME="+dir)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("serve with a broken config: %v, want exit code 2\n%s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("the error does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "listening") {
				t.Errorf("a broken configuration was served:\n%s", out)
			}
		})
	}
}

// TestSIGINT checks that an interrupt (Ctrl-C) shuts down as cleanly as
// SIGTERM.
func TestSIGINT(t *testing.T) {
	t.Parallel()
	_, p := startWithPolicies(t, "decision_log: off\n")
	p.Signal(t, syscall.SIGINT)
	p.Wait(t)
}
