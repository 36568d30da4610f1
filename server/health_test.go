package server

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
)

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

func decideRequest(t *testing.T) *http.Request {
	return decideRequestOf(strings.NewReader(`{"action":"catalog:read"}`)).WithContext(t.Context())
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

// wantMetrics fails t for each of lines that the exposition m lacks,
// showing m's series of that line's metric.
func wantMetrics(t *testing.T, m string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(m, l) {
			name := l[:strings.IndexAny(l+" ", "{ ")]
			t.Errorf("metrics lack %q:\n%s", l, grep(m, name))
		}
	}
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
	err := f.engine.Load(t.Context(), authztest.Policy(t, "", "package authz\nallow if {\n  input.subjet.id == 1\n}\n"))
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
	if p, _ := problems[0].(map[string]any); p["file"] != "policy.rego" || p["line"] == nil {
		t.Errorf("problem = %v, want file and line", p)
	}

	snap := authztest.DefaultPolicies(t)
	if err := f.engine.Load(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	if w := f.do(t, http.MethodGet, "/health/ready", "", nil, ""); w.Code != 200 {
		t.Errorf("ready after load: %d", w.Code)
	}
	w = f.do(t, http.MethodGet, "/v1/status", "", nil, "")
	st = decodeAnswer(t, w.Body.Bytes())
	if st["ready"] != true || st["revision"] != snap.Revision || st["origin"] != "embedded" || st["loaded_at"] == nil ||
		!strings.HasPrefix(fmt.Sprint(st["decision_cache"]), "on: keyed on ") ||
		!strings.Contains(fmt.Sprint(st["decision_cache"]), "input.subject.claims.roles") ||
		!strings.HasPrefix(fmt.Sprint(st["evaluator"]), "compiled (planned in ") || st["evaluator_fallbacks"] != 0.0 {
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
	forged := viewer[:len(viewer)-2] + "AA"
	if forged == viewer {
		forged = viewer[:len(viewer)-2] + "BA"
	}
	f.do(t, http.MethodGet, "/v1/check", "", http.Header{"Authorization": {"Bearer " + forged}}, "")
	m := scrape(t, f.srv)
	wantMetrics(t, m,
		`verdict_decisions_total{api="decide",result="allow"} 1`,
		`verdict_decisions_total{api="decide",result="deny"} 2`,
		`verdict_decisions_total{api="check",result="deny"} 1`,
		`verdict_decisions_total{api="decide",result="error"} 0`,
		`verdict_token_failures_total{reason="malformed"} 1`,
		`verdict_token_failures_total{reason="bad_signature"} 1`,
		`verdict_token_failures_total{reason="expired"} 0`,
		`verdict_decision_duration_seconds_count{api="decide"} 3`,
		`verdict_decision_duration_seconds_count{api="check"} 1`,
		`verdict_policy_reloads_total 1`,
		`verdict_policy_reload_errors_total 0`,
		`verdict_policy_ready 1`,
		`verdict_evaluator_fallbacks_total 0`,
		`verdict_evaluations_heap_stopped_total 0`,
		`verdict_cache_hits_total{cache="token"} 1`,
		`verdict_cache_misses_total{cache="token"} 3`,
		`verdict_cache_entries{cache="token"} 1`,
		`verdict_cache_max_bytes{cache="token"} 6.7108864e+07`,
		`verdict_cache_misses_total{cache="decision"} 2`,
		`verdict_cache_entries{cache="decision"} 2`,
		`verdict_cache_bytes{cache="decision"} `,
		`verdict_decision_log_dropped_total{reason="buffer_full"} 0`,
		`verdict_http_requests_total{code="200",route="decide"} 3`,
		`verdict_http_requests_total{code="400",route="decide"} 1`,
		`verdict_http_requests_total{code="401",route="check"} 1`,
		`verdict_http_requests_total{code="415",route="decide"} 0`,
		`verdict_http_requests_total{code="403",route="check"} 0`,
		`go_goroutines `,
		`process_`,
	)
	// No series for statuses a route cannot answer, nor for interfaces
	// that are off (this server serves neither AuthZEN nor ext_authz).
	for _, never := range []string{
		`verdict_decisions_total{api="ext_authz"`,
		`verdict_decisions_total{api="authzen"`,
		`verdict_decision_duration_seconds_count{api="ext_authz"}`,
		`verdict_http_requests_total{code="401",route="decide"}`,
		`verdict_http_requests_total{code="413",route="check"}`,
		`verdict_http_requests_total{code="503",route="status"}`,
		`verdict_http_requests_total{code="200",route="not_found"}`,
	} {
		if strings.Contains(m, never) {
			t.Errorf("metrics have the impossible series %s", never)
		}
	}
}

// fakeKeySet is a KeySet with a fixed status.
type fakeKeySet struct {
	st  jwks.Status
	err error
}

func (f *fakeKeySet) Ready() error        { return f.err }
func (f *fakeKeySet) Status() jwks.Status { return f.st }

// TestKeySets: remote key sets take part in readiness and show in
// /v1/status and metrics, per issuer.
func TestKeySets(t *testing.T) {
	now := time.Now()
	good := &fakeKeySet{st: jwks.Status{Issuer: "https://a", Ready: true, KeyIDs: []string{"k1", "k2"},
		ConfirmedAt: now.Add(-90 * time.Second), Age: 90 * time.Second, LastSuccess: now,
		Refreshes: jwks.Counts{Schedule: 3, UnknownKID: 2}, RateLimited: 7}}
	down := &fakeKeySet{err: jwks.ErrNotReady, st: jwks.Status{Issuer: "https://b", LastError: "jwks: fetch failed",
		RefreshErrors: jwks.Counts{Schedule: 1}, Refreshes: jwks.Counts{Schedule: 1}}}
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.KeySets = []KeySet{good, down} }})

	if w := f.do(t, http.MethodGet, "/health/ready", "", nil, ""); w.Code != http.StatusServiceUnavailable ||
		!strings.Contains(w.Body.String(), "no key set yet") {
		t.Errorf("ready with an issuer without keys: %d %s", w.Code, w.Body)
	}
	w := f.do(t, http.MethodGet, "/v1/status", "", nil, "")
	for _, want := range []string{`"issuer": "https://a"`, `"age": "1m30s"`, `"unknown_kid": 2`, `"last_error": "jwks: fetch failed"`} {
		if !strings.Contains(w.Body.String(), want) {
			t.Errorf("status lacks %s:\n%s", want, w.Body)
		}
	}
	m := scrape(t, f.srv)
	wantMetrics(t, m,
		`verdict_jwks_refreshes_total{cause="schedule",issuer="https://a"} 3`,
		`verdict_jwks_refreshes_total{cause="unknown_kid",issuer="https://a"} 2`,
		`verdict_jwks_refresh_errors_total{cause="schedule",issuer="https://b"} 1`,
		`verdict_jwks_unknown_kid_rate_limited_total{issuer="https://a"} 7`,
		`verdict_jwks_key_set_age_seconds{issuer="https://a"} 90`,
		`verdict_jwks_keys{issuer="https://a"} 2`,
		`verdict_jwks_ready{issuer="https://a"} 1`,
		`verdict_jwks_ready{issuer="https://b"} 0`,
		`verdict_jwks_last_refresh_ok{issuer="https://b"} 0`,
	)
	if strings.Contains(m, `verdict_jwks_key_set_age_seconds{issuer="https://b"}`) {
		t.Error("an age is exported for an issuer without keys")
	}

	down.err = nil
	if w := f.do(t, http.MethodGet, "/health/ready", "", nil, ""); w.Code != http.StatusOK {
		t.Errorf("ready once every issuer has keys: %d %s", w.Code, w.Body)
	}
}

// sourceAt is a Source that last confirmed its policy at a given time.
type sourceAt time.Time

func (s sourceAt) Status() bundles.Status { return bundles.Status{LastSuccess: time.Time(s)} }

// TestPolicyMetrics: verdict_policy_info names the serving revision (what
// tells replicas apart), and verdict_policy_last_success_timestamp_seconds
// when the source last confirmed it (a bundle going stale shows before
// max_age turns it not ready); without a source, there is no timestamp.
func TestPolicyMetrics(t *testing.T) {
	at := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Source = sourceAt(at) }})
	m := scrape(t, f.srv)
	wantMetrics(t, m,
		`verdict_policy_info{revision="`+f.engine.Status().Revision+`"} 1`,
		`verdict_policy_last_success_timestamp_seconds 1.7961876e+09`,
	)
	none := scrape(t, newFixture(t, fixtureOptions{noLoad: true}).srv)
	if strings.Contains(none, "verdict_policy_info{") || strings.Contains(none, "verdict_policy_last_success_timestamp_seconds ") {
		t.Errorf("series before a policy or without a source:\n%s", none)
	}
}

// TestPolicyInfoInvalidUTF8: a revision that is not UTF-8 (an embedding
// program's snapshot may carry any bytes) is labelled with its invalid
// bytes replaced; the collector's panic failed every metric of the scrape.
func TestPolicyInfoInvalidUTF8(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	snap := authztest.Policy(t, "utf8", "package authz\n\nallow := true\n")
	snap.Revision = "bad\xffrev"
	if err := f.engine.Load(t.Context(), snap); err != nil {
		t.Fatal(err)
	}
	wantMetrics(t, scrape(t, f.srv), "verdict_policy_info{revision=\"bad\uFFFDrev\"} 1", "verdict_policy_ready 1")
}
