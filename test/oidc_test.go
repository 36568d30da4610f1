package test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// The OpenID provider the test runs: oidc-provider (OpenID Certified), from
// the npm registry at the version test/oidc/package-lock.json pins, started
// by test/oidc/provider.js. The client and the resources are provider.js's.
const (
	oidcDir          = "oidc"
	oidcClientID     = "payments"
	oidcAudience     = "urn:verdict:orders"  // signed RS256 by provider.js
	oidcCallerAud    = "urn:verdict:callers" // service tokens, signed RS256 by provider.js
	oidcOtherAud     = "urn:other:api"       // signed ES256 by provider.js
	npmInstallLimit  = 5 * time.Minute
	oidcStartTimeout = 20 * time.Second
)

// TestOIDCProvider gets real access tokens from a real OpenID provider
// through the client_credentials grant and has a verdict configured with
// discovery: true decide on them: the provider's discovery document and key
// set are fetched over HTTP, a token for Verdict's audience is allowed (as
// the service caller payments, and as a subject with the viewer role), and
// a token the same provider issued for another audience is denied.
func TestOIDCProvider(t *testing.T) {
	t.Parallel()
	node := needBinary(t, "node")
	npm := needBinary(t, "npm")
	dir, err := filepath.Abs(oidcDir)
	if err != nil {
		t.Fatal(err)
	}
	npmInstall(t, npm, dir)

	secret := randomHex(t, 32)
	op := startOIDCProvider(t, node, dir, secret)

	f := newFixture(t)
	p := f.start(t, `addr: 127.0.0.1:0
policy:
  dir: policies
decision_log: stdout
forward_auth:
  action_header: X-Verdict-Action
tokens:
  leeway: 5s
  jwks_persist_dir: "off"
  issuers:
    - issuer: `+op.Issuer+`
      audiences: [`+oidcAudience+`]
      algorithms: [RS256, ES256]
      discovery: true
      required_typ: at+jwt        # RFC 9068 access tokens, as oidc-provider issues them
      max_lifetime: 10m           # it issues them for 5 minutes
callers:
  token_audiences: [`+oidcCallerAud+`]
`, nil)

	// A service token for the caller audience, a token for Verdict's
	// audience, and one for another resource server.
	caller := op.clientCredentials(t, secret, oidcCallerAud, "inventory:reserve")
	subject := op.clientCredentials(t, secret, oidcAudience, "orders:read")
	other := op.clientCredentials(t, secret, oidcOtherAud, "")
	if caller == subject {
		t.Fatal("the provider issued the same token twice")
	}
	for _, tc := range []struct {
		name, token, alg, aud string
	}{{"caller", caller, "RS256", oidcCallerAud}, {"subject", subject, "RS256", oidcAudience}, {"other", other, "ES256", oidcOtherAud}} {
		hdr, claims := jwtParts(t, tc.token)
		if hdr["alg"] != tc.alg || hdr["kid"] == nil || hdr["typ"] != "at+jwt" || claims["iss"] != op.Issuer || claims["aud"] != tc.aud ||
			claims["client_id"] != oidcClientID {
			t.Fatalf("%s token: header %v, claims %v: want alg %s, a kid, typ at+jwt, iss %s, aud %s, client_id %s",
				tc.name, hdr, claims, tc.alg, op.Issuer, tc.aud, oidcClientID)
		}
	}

	t.Run("decide", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			body       map[string]any
			wantAllow  bool
			wantReason string // the first reason
			wantHeader map[string]string
		}{
			{name: "service caller payments reserves inventory",
				body:      map[string]any{"caller": map[string]any{"token": caller}, "action": "inventory:reserve"},
				wantAllow: true, wantReason: "service payments may call inventory:reserve",
				wantHeader: map[string]string{"x-verdict-caller": oidcClientID}},
			{name: "subject with the viewer role reads orders",
				body:      map[string]any{"token": subject, "action": "orders:read"},
				wantAllow: true, wantReason: "role viewer grants orders:read",
				wantHeader: map[string]string{"x-verdict-subject": oidcClientID, "x-verdict-roles": "viewer"}},
			{name: "subject and service caller together",
				body:      map[string]any{"token": subject, "caller": map[string]any{"token": caller}, "action": "inventory:reserve"},
				wantAllow: true, wantReason: "service payments may call inventory:reserve"},
			{name: "the verified subject is still bound by policy",
				body:       map[string]any{"token": subject, "action": "orders:delete"},
				wantReason: "no role grants orders:delete"},
			{name: "a token for Verdict's users is not a service token",
				body:       map[string]any{"caller": map[string]any{"token": subject}, "action": "inventory:reserve"},
				wantReason: "caller: bad_audience"},
			{name: "a service token is not a user's token",
				body:       map[string]any{"token": caller, "action": "orders:read"},
				wantReason: "token: bad_audience"},
			{name: "caller token for another audience",
				body:       map[string]any{"caller": map[string]any{"token": other}, "action": "inventory:reserve"},
				wantReason: "caller: bad_audience"},
			{name: "subject token for another audience",
				body:       map[string]any{"token": other, "action": "catalog:read"},
				wantReason: "token: bad_audience"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				a := p.decideOK(t, mustJSON(t, tc.body))
				if a.Allow != tc.wantAllow || len(a.Reasons) == 0 || a.Reasons[0] != tc.wantReason {
					t.Fatalf("allow %v, reasons %q; want allow %v, first reason %q", a.Allow, a.Reasons, tc.wantAllow, tc.wantReason)
				}
				for k, v := range tc.wantHeader {
					if a.Headers[k] != v {
						t.Errorf("header %s = %q, want %q (headers %v)", k, a.Headers[k], v, a.Headers)
					}
				}
			})
		}
	})

	t.Run("forward-auth", func(t *testing.T) {
		for _, tc := range []struct {
			name, token string
			want        int
		}{
			{"verdict's audience", subject, http.StatusOK},
			{"another audience", other, http.StatusUnauthorized},
		} {
			r := do(t, p.Client, http.MethodGet, p.Base+"/v1/check", nil, map[string]string{
				"Authorization": "Bearer " + tc.token, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42",
			})
			if r.Status != tc.want {
				t.Errorf("%s: status %d, want %d: %s", tc.name, r.Status, tc.want, r.Body)
			}
		}
	})

	t.Run("status", func(t *testing.T) {
		// The key set verdict serves is the provider's, found through
		// discovery.
		var provKeys struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		r := do(t, http.DefaultClient, http.MethodGet, op.Issuer+"/jwks", nil, nil)
		if err := json.Unmarshal(r.Body, &provKeys); r.Status != http.StatusOK || err != nil {
			t.Fatalf("provider's key set: status %d, %v: %s", r.Status, err, r.Body)
		}
		var want []string
		for _, k := range provKeys.Keys {
			want = append(want, k.Kid)
		}
		slices.Sort(want)

		st, raw := status(t, p)
		if !st.Ready || len(st.KeySets) != 1 {
			t.Fatalf("/v1/status: want ready with one key set: %s", raw)
		}
		ks := st.KeySets[0]
		if ks.Issuer != op.Issuer || ks.URL != op.Issuer+"/jwks" || !ks.Ready || ks.Source != "fetched" ||
			!slices.Equal(ks.KeyIDs, want) || ks.LastError != "" {
			t.Errorf("/v1/status key set: want issuer %s, url %s/jwks, ready, fetched, key_ids %q, no error: %s",
				op.Issuer, op.Issuer, want, raw)
		}
	})
}

// npmInstall installs test/oidc's locked dependencies into
// test/oidc/node_modules (git-ignored, kept between runs) unless the
// install there is at least as new as package-lock.json.
func npmInstall(t *testing.T, npm, dir string) {
	t.Helper()
	lock, err := os.Stat(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	// npm writes node_modules/.package-lock.json when an install completes.
	if done, err := os.Stat(filepath.Join(dir, "node_modules", ".package-lock.json")); err == nil && !done.ModTime().Before(lock.ModTime()) {
		return
	}
	ctx, cancel := context.WithTimeout(t.Context(), npmInstallLimit)
	defer cancel()
	start := time.Now()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=warn")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("npm ci in %s (needs the npm registry): %v\n%s", dir, err, out)
	}
	t.Logf("npm ci in %s: %v", dir, time.Since(start).Round(time.Millisecond))
}

// oidcProvider is a running provider.js.
type oidcProvider struct {
	Issuer string // http://127.0.0.1:PORT, also its base URL
	client *http.Client
}

// startOIDCProvider runs "node provider.js" on a free loopback port and
// reads the issuer URL from its first line of output. A cleanup stops it
// (SIGTERM; it also exits when its stdin, a pipe from this process, closes)
// and, when the test failed, prints its output.
func startOIDCProvider(t *testing.T, node, dir, secret string) *oidcProvider {
	t.Helper()
	cmd := exec.Command(node, "provider.js", "0")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "OIDC_CLIENT_SECRET="+secret, "OIDC_EXIT_ON_STDIN_CLOSE=1")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, rest := &authztest.SyncBuffer{}, &authztest.SyncBuffer{}
	cmd.Stderr = stderr
	// The issuer URL is the first line; anything else oidc-provider prints
	// (notices) is kept for the failure report.
	first := make(chan string, 1)
	c, err := startChild(cmd, func() {
		br := bufio.NewReader(stdout)
		line, _ := br.ReadString('\n')
		first <- strings.TrimSpace(line)
		_, _ = io.Copy(rest, br)
	})
	if err != nil {
		t.Fatalf("start node provider.js: %v", err)
	}
	t.Cleanup(func() {
		c.sigterm(t, "provider.js")
		_ = stdin.Close()
		if !c.waitExit(stopDeadline) {
			t.Errorf("provider.js did not exit within %v of SIGTERM", stopDeadline)
		} else if c.waitErr != nil { // it exits 0 on SIGTERM
			t.Errorf("provider.js did not exit cleanly: %v", c.waitErr)
		}
		if t.Failed() {
			t.Logf("node provider.js\n--- stderr ---\n%s--- stdout ---\n%s", stderr.String(), tail(rest.String(), 40))
		}
	})

	var issuer string
	select {
	case issuer = <-first:
	case <-c.done:
		t.Fatalf("provider.js exited before printing its issuer URL: %v", c.waitErr)
	case <-time.After(oidcStartTimeout):
		t.Fatalf("no issuer URL from provider.js within %v", oidcStartTimeout)
	}
	if u, err := url.Parse(issuer); err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" || u.Port() == "" {
		t.Fatalf("provider.js's first line is not its issuer URL: %q", issuer)
	}
	op := &oidcProvider{Issuer: issuer, client: &http.Client{Timeout: 10 * time.Second}}
	r := do(t, op.client, http.MethodGet, issuer+"/.well-known/openid-configuration", nil, nil)
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(r.Body, &doc); r.Status != http.StatusOK || err != nil || doc.Issuer != issuer {
		t.Fatalf("provider's discovery document: status %d, %v: %s", r.Status, err, r.Body)
	}
	return op
}

// clientCredentials gets an access token through the client_credentials
// grant (RFC 6749 4.4) for one resource indicator (RFC 8707), with
// client_secret_basic authentication.
func (op *oidcProvider) clientCredentials(t *testing.T, secret, resource, scope string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, op.Issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(oidcClientID), url.QueryEscape(secret)) // RFC 6749 2.3.1
	resp, err := op.client.Do(req)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(body, &tok); resp.StatusCode != http.StatusOK || err != nil || tok.AccessToken == "" ||
		!strings.EqualFold(tok.TokenType, "Bearer") {
		t.Fatalf("token request for %s: status %d, %v: %s", resource, resp.StatusCode, err, body)
	}
	return tok.AccessToken
}

// jwtParts decodes a JWT's header and claims without verifying it.
func jwtParts(t *testing.T, jwt string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(jwt, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS compact serialization: %d parts", len(parts))
	}
	for i, dst := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, dst); err != nil {
			t.Fatalf("JWT part %d: %v", i, err)
		}
	}
	return header, claims
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}
