package test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestDecisions runs the functional matrix against one process configured
// with the default policies and two issuers (a PEM public key and a JWKS
// file): allow, deny, anonymous public, invalid tokens, service callers,
// over POST /v1/decide (always 200 with the decision) and forward-auth
// /v1/check (200, 401 with WWW-Authenticate, 403).
func TestDecisions(t *testing.T) {
	t.Parallel()
	f, p := startWithPolicies(t, "decision_log: stdout\n"+actionHeaderYAML+"callers:\n  token_audiences: [verdict-callers]\n")

	now := time.Now()
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	admin := f.Issuer2.Mint(t, map[string]any{"sub": "root", "roles": []string{"admin"}})
	expired := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"},
		"iat": now.Add(-2 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})
	notYet := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}, "nbf": now.Add(time.Hour).Unix()})
	forged := authztest.NewIssuer(t, "ES256").Mint(t, map[string]any{"roles": []string{"admin"}}) // same iss, another key
	unknownIss := authztest.NewIssuer(t, "ES256")
	unknownIss.Name = "https://evil.test"
	unknown := unknownIss.Mint(t, map[string]any{"roles": []string{"admin"}})
	wrongAud := f.Issuer.Mint(t, map[string]any{"aud": "someone-else", "roles": []string{"admin"}})
	noneAlg := unsignedToken(t, viewer)
	payments := f.Issuer.Mint(t, map[string]any{"sub": "svc-payments", "azp": "payments", "aud": "verdict-callers"})
	shipping := f.Issuer.Mint(t, map[string]any{"sub": "svc-shipping", "azp": "shipping", "aud": "verdict-callers"})
	userAsPayments := f.Issuer.Mint(t, map[string]any{"sub": "mallory", "azp": "payments"}) // a user's token
	huge := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}, "pad": strings.Repeat("x", 10000)})

	t.Run("decide", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			body       map[string]any
			wantAllow  bool
			wantReason string // a prefix of the first reason
			wantSub    string // x-verdict-subject on allow
		}{
			{name: "viewer reads orders", body: map[string]any{"token": viewer, "action": "orders:read"},
				wantAllow: true, wantReason: "role viewer grants orders:read", wantSub: "alice"},
			{name: "viewer may not delete", body: map[string]any{"token": viewer, "action": "orders:delete"},
				wantReason: "no role grants orders:delete"},
			{name: "action as an object", body: map[string]any{"token": viewer, "action": map[string]any{"method": "GET", "path": "/orders/42"}},
				wantAllow: true, wantReason: "role viewer grants orders:read", wantSub: "alice"},
			{name: "admin from the JWKS issuer", body: map[string]any{"token": admin, "action": "orders:delete"},
				wantAllow: true, wantReason: "role admin grants orders:delete", wantSub: "root"},
			{name: "anonymous public", body: map[string]any{"action": "catalog:read"},
				wantAllow: true, wantReason: "anonymous access to catalog:read is public"},
			{name: "anonymous private", body: map[string]any{"action": "orders:read"},
				wantReason: "anonymous access to orders:read is not allowed"},
			{name: "expired token", body: map[string]any{"token": expired, "action": "catalog:read"},
				wantReason: "token: expired"},
			{name: "token not yet valid", body: map[string]any{"token": notYet, "action": "catalog:read"},
				wantReason: "token: not_yet_valid"},
			{name: "bad signature", body: map[string]any{"token": forged, "action": "catalog:read"},
				wantReason: "token: bad_signature"},
			{name: "unknown issuer", body: map[string]any{"token": unknown, "action": "catalog:read"},
				wantReason: "token: bad_issuer"},
			{name: "wrong audience", body: map[string]any{"token": wrongAud, "action": "catalog:read"},
				wantReason: "token: bad_audience"},
			{name: "alg none", body: map[string]any{"token": noneAlg, "action": "catalog:read"},
				wantReason: "token: disallowed_alg"},
			{name: "malformed token", body: map[string]any{"token": "not.a.jwt", "action": "catalog:read"},
				wantReason: "token: malformed"},
			{name: "token over max_bytes", body: map[string]any{"token": huge, "action": "catalog:read"},
				wantReason: "token: too_large"},
			{name: "payments service reserves inventory", body: map[string]any{"caller": map[string]any{"token": payments}, "action": "inventory:reserve"},
				wantAllow: true, wantReason: "service payments may call inventory:reserve"},
			{name: "payments service on behalf of a user", body: map[string]any{"token": viewer, "caller": map[string]any{"token": payments}, "action": "inventory:reserve"},
				wantAllow: true, wantReason: "service payments may call inventory:reserve", wantSub: "alice"},
			{name: "another service may not reserve", body: map[string]any{"caller": map[string]any{"token": shipping}, "action": "inventory:reserve"},
				wantReason: "only payments may call inventory:reserve"},
			{name: "a user alone may not reserve", body: map[string]any{"token": viewer, "action": "inventory:reserve"},
				wantReason: "only payments may call inventory:reserve, and the caller is not authenticated"},
			{name: "invalid caller token", body: map[string]any{"caller": map[string]any{"token": forged}, "action": "inventory:reserve"},
				wantReason: "caller:"},
			{name: "a user's token with azp payments is not the payments service",
				body:       map[string]any{"caller": map[string]any{"token": userAsPayments}, "action": "inventory:reserve"},
				wantReason: "caller: bad_audience"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := p.decide(t, mustJSON(t, tc.body))
				if r.Status != http.StatusOK {
					t.Fatalf("status %d, want 200: %s", r.Status, r.Body)
				}
				if ct := r.Header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("Content-Type %q, want application/json", ct)
				}
				a := r.JSON(t)
				if a.Allow != tc.wantAllow || a.Error != nil || a.ID == "" || a.Revision == "" {
					t.Fatalf("answer %s, want a decision with allow=%v", r.Body, tc.wantAllow)
				}
				if len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], tc.wantReason) {
					t.Errorf("reasons %q, want the first to start with %q", a.Reasons, tc.wantReason)
				}
				if tc.wantAllow && a.Headers["x-verdict-subject"] != tc.wantSub {
					t.Errorf("x-verdict-subject %q, want %q", a.Headers["x-verdict-subject"], tc.wantSub)
				}
				if !tc.wantAllow && len(a.Headers) != 0 {
					t.Errorf("a deny carries headers: %s", r.Body)
				}
			})
		}
	})

	t.Run("check", func(t *testing.T) {
		for _, tc := range []struct {
			name        string
			header      map[string]string
			method      string // of the request to /v1/check itself; default GET
			wantStatus  int
			wantAuth    string // WWW-Authenticate
			wantSubject string
			wantReason  string
		}{
			{name: "viewer GET order (Caddy/Traefik headers)",
				header:     map[string]string{"Authorization": "Bearer " + viewer, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 200, wantSubject: "alice", wantReason: "role viewer grants orders:read"},
			{name: "viewer GET order (nginx headers)",
				header:     map[string]string{"Authorization": "Bearer " + viewer, "X-Original-Method": "GET", "X-Original-URI": "/orders/42?x=1"},
				wantStatus: 200, wantSubject: "alice", wantReason: "role viewer grants orders:read"},
			{name: "the request's own method and path", method: http.MethodDelete,
				header:     map[string]string{"Authorization": "Bearer " + admin},
				wantStatus: 403, wantReason: "no role grants v1:delete"}, // DELETE /v1/check itself
			{name: "X-Verdict-Action names the action",
				header:     map[string]string{"Authorization": "Bearer " + viewer, "X-Verdict-Action": "orders:read", "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 200, wantSubject: "alice"},
			{name: "viewer DELETE order",
				header:     map[string]string{"Authorization": "Bearer " + viewer, "X-Forwarded-Method": "DELETE", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 403, wantReason: "no role grants orders:delete"},
			{name: "anonymous private", header: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 401, wantAuth: "Bearer", wantReason: "anonymous access to orders:read is not allowed"},
			{name: "anonymous public", header: map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/catalog/7"},
				wantStatus: 200, wantSubject: "", wantReason: "anonymous access to catalog:read is public"},
			{name: "dot segments are refused (proxies forward them unresolved)",
				header:     map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/catalog/../orders/42"},
				wantStatus: 400},
			{name: "encoded separator in a segment",
				header:     map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/catalog/..%2Forders/42"},
				wantStatus: 400},
			{name: "expired token, even for a public path",
				header:     map[string]string{"Authorization": "Bearer " + expired, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/catalog/7"},
				wantStatus: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: expired"},
			{name: "bad signature",
				header:     map[string]string{"Authorization": "Bearer " + forged, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: bad_signature"},
			{name: "unknown issuer",
				header:     map[string]string{"Authorization": "Bearer " + unknown, "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/orders/42"},
				wantStatus: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: bad_issuer"},
			{name: "not a bearer scheme",
				header:     map[string]string{"Authorization": "Basic YWxpY2U6c2VjcmV0", "X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/catalog/7"},
				wantStatus: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: malformed"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				method := tc.method
				if method == "" {
					method = http.MethodGet
				}
				r := do(t, p.Client, method, p.Base+"/v1/check", nil, tc.header)
				if r.Status != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", r.Status, tc.wantStatus, r.Body)
				}
				if got := r.Header.Get("WWW-Authenticate"); got != tc.wantAuth {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.wantAuth)
				}
				if tc.wantStatus == 400 {
					checkErrorShape(t, r, 400, "invalid_request")
					return
				}
				a := r.JSON(t)
				if a.Allow != (tc.wantStatus == 200) || a.Error != nil {
					t.Errorf("body %s, want allow=%v and no error", r.Body, tc.wantStatus == 200)
				}
				if tc.wantReason != "" && (len(a.Reasons) == 0 || !strings.HasPrefix(a.Reasons[0], tc.wantReason)) {
					t.Errorf("reasons %q, want the first to start with %q", a.Reasons, tc.wantReason)
				}
				if id := r.Header.Get("X-Verdict-Decision-Id"); id == "" || id != a.ID {
					t.Errorf("X-Verdict-Decision-Id %q, want the body's decision_id %q", id, a.ID)
				}
				_, hasSubject := r.Header["X-Verdict-Subject"]
				switch {
				case tc.wantStatus == 200 && (!hasSubject || r.Header.Get("X-Verdict-Subject") != tc.wantSubject):
					t.Errorf("X-Verdict-Subject %q (present %v), want %q", r.Header.Get("X-Verdict-Subject"), hasSubject, tc.wantSubject)
				case tc.wantStatus != 200 && hasSubject:
					t.Errorf("a %d answer carries X-Verdict-Subject %q", r.Status, r.Header.Get("X-Verdict-Subject"))
				}
			})
		}
	})

	// The decision log has one line per decision and never the raw token.
	eventually(t, 2*time.Second, func() string {
		if !strings.Contains(p.Stdout.String(), `"subject_id":"alice"`) {
			return "no decision for alice in the decision log"
		}
		return ""
	})
	for _, tok := range []string{viewer, admin, expired, forged, payments} {
		sig := tok[strings.LastIndexByte(tok, '.')+1:]
		if strings.Contains(p.Stdout.String(), sig) || strings.Contains(p.Stderr.String(), sig) {
			t.Errorf("a log contains a raw token")
			break
		}
	}

	// Metrics count the decisions.
	m := metrics(t, p)
	for _, series := range []string{
		`verdict_decisions_total{api="decide",result="allow"}`,
		`verdict_decisions_total{api="decide",result="deny"}`,
		`verdict_token_failures_total{reason="expired"}`,
		`verdict_token_failures_total{reason="bad_signature"}`,
		`verdict_decision_duration_seconds_bucket`,
		`verdict_policy_reloads_total`,
		`verdict_policy_reload_errors_total`,
		// verdict_jwks_* series exist per remote issuer only (none here).
	} {
		if !strings.Contains(m, series) {
			t.Errorf("/metrics has no %s", series)
		}
	}
}

// unsignedToken re-encodes a token's payload with {"alg":"none"} and no
// signature.
func unsignedToken(t *testing.T, tok string) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWS: %q", tok)
	}
	return "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
}
