package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/policies"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func decideRequest(t *testing.T) *http.Request {
	return httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/decide", strings.NewReader(`{"action":"catalog:read"}`))
}

func scrape(t *testing.T, s *Server) string {
	t.Helper()
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/metrics", nil))
	if w.Code != 200 {
		t.Fatalf("/metrics: %d", w.Code)
	}
	b, _ := io.ReadAll(w.Body)
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestHealth(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	if w := f.do(t, http.MethodGet, "/health/live", "", nil, ""); w.Code != 200 {
		t.Errorf("live before load: %d", w.Code)
	}
	if w := f.do(t, http.MethodGet, "/health/ready", "", nil, ""); w.Code != 503 {
		t.Errorf("ready before load: %d, want 503", w.Code)
	}
	w := f.do(t, http.MethodGet, "/v1/status", "", nil, "")
	if got := decodeAnswer(t, w.Body.Bytes()); w.Code != 200 || got["ready"] != false {
		t.Errorf("status before load: %d %s", w.Code, w.Body)
	}

	// A broken policy: still not ready, and the error shows with its location.
	err := f.engine.Load(t.Context(), policySnapshot(t, "package authz\nallow if {\n  input.subjet.id == 1\n}\n"))
	if err == nil {
		t.Fatal("broken policy loaded")
	}
	w = f.do(t, http.MethodGet, "/v1/status", "", nil, "")
	st := decodeAnswer(t, w.Body.Bytes())
	le, _ := st["last_error"].(map[string]any)
	problems, _ := le["problems"].([]any)
	if len(problems) == 0 {
		t.Fatalf("status has no problems: %s", w.Body)
	}
	if p, _ := problems[0].(map[string]any); p["file"] != "policy.rego" || p["row"] == nil {
		t.Errorf("problem = %v, want file and row", p)
	}

	snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.engine.Load(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	if w := f.do(t, http.MethodGet, "/health/ready", "", nil, ""); w.Code != 200 {
		t.Errorf("ready after load: %d", w.Code)
	}
	w = f.do(t, http.MethodGet, "/v1/status", "", nil, "")
	st = decodeAnswer(t, w.Body.Bytes())
	if st["ready"] != true || st["revision"] != snap.Revision || st["origin"] != "embedded" || st["loaded_at"] == nil {
		t.Errorf("status after load: %s", w.Body)
	}
	if w := f.do(t, http.MethodPost, "/health/ready", "", nil, ""); w.Code != 405 {
		t.Errorf("POST ready: %d, want 405", w.Code)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	viewer := f.mint(t, "alice", "viewer")
	f.do(t, http.MethodPost, "/v1/decide", `{"token":"`+viewer+`","action":"orders:read"}`, nil, "")
	f.do(t, http.MethodPost, "/v1/decide", `{"token":"`+viewer+`","action":"orders:delete"}`, nil, "")
	f.do(t, http.MethodPost, "/v1/decide", `{"token":"x.y.z","action":"orders:read"}`, nil, "")
	f.do(t, http.MethodPost, "/v1/decide", `{"action":`, nil, "")
	f.do(t, http.MethodGet, "/v1/check", "", http.Header{"Authorization": {"Bearer " + viewer[:len(viewer)-2] + "AA"}}, "")
	m := scrape(t, f.srv)
	for _, want := range []string{
		`verdict_decisions_total{result="allow"} 1`,
		`verdict_decisions_total{result="deny"} 3`,
		`verdict_decisions_total{result="error"} 0`,
		`verdict_token_failures_total{reason="malformed"} 1`,
		`verdict_token_failures_total{reason="bad_signature"} 1`,
		`verdict_token_failures_total{reason="expired"} 0`,
		`verdict_decision_duration_seconds_count 4`,
		`verdict_policy_reloads_total 1`,
		`verdict_policy_reload_errors_total 0`,
		`verdict_policy_ready 1`,
		`verdict_jwks_refreshes_total 0`,
		`verdict_decision_log_dropped_total 0`,
		`verdict_http_requests_total{code="200",route="decide"} 3`,
		`verdict_http_requests_total{code="400",route="decide"} 1`,
		`verdict_http_requests_total{code="401",route="check"} 1`,
		`go_goroutines `,
		`process_`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}
