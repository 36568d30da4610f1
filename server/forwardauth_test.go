package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestActionHeaderIsOptIn: a client-sent X-Verdict-Action is ignored unless
// the operator named the header; the action comes from method and path.
func TestActionHeaderIsOptIn(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.ActionHeader = "" }})
	w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{
		"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/orders/42"},
		"X-Verdict-Action": {"catalog:read"}, // a client's attempt to name a public action
	}, "")
	if w.Code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401 (the action is orders:delete): %s", w.Code, w.Body)
	}
	configured := newFixture(t, fixtureOptions{})
	w = configured.do(t, http.MethodGet, "/v1/check", "", http.Header{
		"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/orders/42"}, "X-Verdict-Action": {"catalog:read"},
	}, "")
	if w.Code != http.StatusOK {
		t.Fatalf("configured action header: status %d, want 200: %s", w.Code, w.Body)
	}
	w = configured.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Verdict-Action": {"catalog:read", "orders:delete"}}, "")
	if w.Code != http.StatusBadRequest {
		t.Fatalf("repeated action header: status %d, want 400", w.Code)
	}
}

// TestClientAddress: input.context.remote_addr is the client of the
// protected request — on /v1/check from the header the operator named,
// only from a trusted proxy; on /v1/decide from the body — and never the
// peer's own address, nor a header nobody named (proxies relay the
// client's headers).
func TestClientAddress(t *testing.T) {
	echo := authztest.Policy(t, "echo", "package authz\n\nallow := true\n\nreasons := {object.get(input.context, \"remote_addr\", \"none\")}\n")
	newWith := func(header string) *fixture {
		f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}, mutate: func(o *Options) { o.ClientAddrHeader = header }})
		if err := f.engine.Load(t.Context(), echo); err != nil {
			t.Fatal(err)
		}
		return f
	}
	unnamed, xff, realIP := newWith(""), newWith("X-Forwarded-For"), newWith("X-Real-Ip")
	for _, tc := range []struct {
		name   string
		f      *fixture
		remote string
		header http.Header
		want   string
	}{
		{"xff: rightmost untrusted hop", xff, "10.0.0.5:443", http.Header{"X-Forwarded-For": {"203.0.113.9, 10.0.0.7"}}, "203.0.113.9"},
		{"xff: across header lines", xff, "10.0.0.5:443", http.Header{"X-Forwarded-For": {"198.51.100.1", "203.0.113.9"}}, "203.0.113.9"},
		{"xff: none", xff, "10.0.0.5:443", nil, "none"},
		{"xff: malformed", xff, "10.0.0.5:443", http.Header{"X-Forwarded-For": {"not-an-ip"}}, "none"},
		{"xff: only trusted hops names no client", xff, "10.0.0.5:443", http.Header{"X-Forwarded-For": {"10.0.0.9"}, "X-Real-Ip": {"203.0.113.9"}}, "none"},
		{"xff: X-Real-Ip is not the named header", xff, "10.0.0.5:443", http.Header{"X-Real-Ip": {"203.0.113.9"}}, "none"},
		{"xff: untrusted peer", xff, "192.0.2.1:1234", http.Header{"X-Forwarded-For": {"203.0.113.9"}}, "none"},
		{"x-real-ip", realIP, "10.0.0.5:443", http.Header{"X-Real-Ip": {"203.0.113.9"}, "X-Forwarded-For": {"198.51.100.1"}}, "203.0.113.9"},
		{"x-real-ip: repeated", realIP, "10.0.0.5:443", http.Header{"X-Real-Ip": {"203.0.113.9", "198.51.100.1"}}, "none"},
		{"unnamed: a client's X-Forwarded-For is not believed", unnamed, "10.0.0.5:443", http.Header{"X-Forwarded-For": {"10.1.2.3"}}, "none"},
		{"unnamed: a client's X-Real-Ip is not believed", unnamed, "10.0.0.5:443", http.Header{"X-Real-Ip": {"10.1.2.3"}}, "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.header.Clone()
			if h == nil {
				h = http.Header{}
			}
			h.Set("X-Forwarded-Method", "GET")
			h.Set("X-Forwarded-Uri", "/x")
			w := tc.f.do(t, http.MethodGet, "/v1/check", "", h, tc.remote)
			if got := decodeReasons(t, w.Body.Bytes()); len(got) != 1 || got[0] != tc.want {
				t.Errorf("remote_addr %q, want %q", got, tc.want)
			}
		})
	}
	w := xff.do(t, http.MethodPost, "/v1/decide", `{"action": "x", "context": {"remote_addr": "198.51.100.7"}}`, nil, "10.0.0.5:443")
	if got := decodeReasons(t, w.Body.Bytes()); len(got) != 1 || got[0] != "198.51.100.7" {
		t.Errorf("decide: remote_addr %q, want the body's", got)
	}
	w = xff.do(t, http.MethodPost, "/v1/decide", `{"action": "x"}`, nil, "10.0.0.5:443")
	if got := decodeReasons(t, w.Body.Bytes()); len(got) != 1 || got[0] != "none" {
		t.Errorf("decide without context: remote_addr %q, want none (the peer is the enforcement point)", got)
	}
}

func decodeReasons(t *testing.T, body []byte) []string {
	t.Helper()
	var d authz.Decision
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	return d.Reasons
}

func TestDecisionLogDropsQueryAndBoundsFields(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	long := "/catalog/" + strings.Repeat("a", 5000)
	f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/items?access_token=secret"}}, "")
	f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {long}}, "")
	recs := f.log.records()
	if len(recs) != 2 {
		t.Fatalf("%d records", len(recs))
	}
	if recs[0].Action.Path != "/catalog/items" {
		t.Errorf("logged path %q, want it without the query", recs[0].Action.Path)
	}
	if n := len(recs[1].Action.Path); n > maxLoggedField+len("…") {
		t.Errorf("logged path of %d bytes, want at most %d", n, maxLoggedField)
	}
}

// TestDecisionLogCutsPathParametersAndFragments: the path a record names
// is cut at path parameters and at a fragment, literal or encoded, as at
// the query: a session ID or a token after a ';' or a '#' never reaches
// the record's action. Such a path is refused (400, so the record has no
// input to hold it either), but for an encoded '#', which is path data
// and reaches the policy (and the record's input, when kept). Before,
// only a query was cut.
func TestDecisionLogCutsPathParametersAndFragments(t *testing.T) {
	var out authztest.SyncBuffer
	dl, err := decisionlog.New(decisionlog.Options{Writer: &out})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{keepInput: true, mutate: func(o *Options) { o.DecisionLog = dl }})
	stop := authztest.Start(t, dl.Run)
	cases := []struct {
		uri, want string
		code      int
	}{
		{uri: "/app;jsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/cb#access_token=SECRET", want: "/cb", code: http.StatusBadRequest},
		{uri: "/app%3Bjsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/app%3bjsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/orders/42;v=1?code=SECRET", want: "/orders/42", code: http.StatusBadRequest},
		{uri: "/cb%23access_token=SECRET", want: "/cb", code: http.StatusUnauthorized},
		{uri: "/orders/42?q=1;sid=SECRET#x", want: "/orders/42", code: http.StatusUnauthorized},
		{uri: "/app%253Bjsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/app\uff1bjsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/app%EF%BC%9Bjsessionid=SECRET", want: "/app", code: http.StatusBadRequest},
		{uri: "/cb\uff03access_token=SECRET", want: "/cb", code: http.StatusBadRequest},
		{uri: "/cb%2523access_token=SECRET", want: "/cb", code: http.StatusBadRequest},
		{uri: "/orders/42%3B/SECRET", want: "/orders/42", code: http.StatusBadRequest},
	}
	for _, tc := range cases {
		w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {tc.uri}}, "")
		if w.Code != tc.code {
			t.Errorf("%s: status %d, want %d", tc.uri, w.Code, tc.code)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != len(cases) {
		t.Fatalf("%d records, want %d:\n%s", len(lines), len(cases), out.String())
	}
	for i, tc := range cases {
		var rec struct {
			Action struct{ Path string }
		}
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Action.Path != tc.want {
			t.Errorf("%s: logged path %q, want %q", tc.uri, rec.Action.Path, tc.want)
		}
		if tc.code == http.StatusBadRequest && strings.Contains(lines[i], "SECRET") {
			t.Errorf("%s: the record holds what followed a ';' or a '#': %s", tc.uri, lines[i])
		}
	}
}

// TestEnvoyPathPrefix: Envoy's HTTP ext_authz asks with the original method
// at /v1/check followed by the original path.
func TestEnvoyPathPrefix(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	viewer := "Bearer " + f.mint(t, "alice", "viewer")
	for _, tc := range []struct {
		method, target, auth string
		want                 int
		family               http.Header // forward-auth headers, which Envoy never sets
	}{
		{http.MethodGet, "/v1/check/orders/42", viewer, http.StatusOK, nil},
		{http.MethodGet, "/v1/check/orders/42?x=1", viewer, http.StatusOK, nil},
		{http.MethodDelete, "/v1/check/orders/42", viewer, http.StatusForbidden, nil},
		{http.MethodGet, "/v1/check/catalog/items", "", http.StatusOK, nil},
		{http.MethodGet, "/v1/check/orders/42", "", http.StatusUnauthorized, nil},
		// The path as the client wrote it: net/url re-encodes a path
		// holding '|' (or '{', '"', raw UTF-8) and then returns %2F as a
		// '/' the upstream, given the raw path, does not see.
		{http.MethodGet, "/v1/check/catalog%2Fadmin|", "", http.StatusBadRequest, nil},
		{http.MethodGet, "/v1/check/catalog%2Fx{", "", http.StatusBadRequest, nil},
		{http.MethodGet, "/v1/check/catalog%2F\u00e4", "", http.StatusBadRequest, nil},
		{http.MethodPost, "/v1/check/orders/42?_method=DELETE", viewer, http.StatusBadRequest, nil},
		// A forward-auth family with a request under /v1/check/ came from
		// the client (Envoy sets neither, but passes what allowed_headers
		// lists): it would have another request decided than Envoy's.
		{http.MethodGet, "/v1/check/orders/42", "", http.StatusBadRequest,
			http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/x"}}},
		{http.MethodDelete, "/v1/check/orders/42", viewer, http.StatusBadRequest,
			http.Header{"X-Original-Method": {"GET"}, "X-Original-Uri": {"/orders/42"}}},
		{http.MethodGet, "/v1/check/", "", http.StatusBadRequest,
			http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/x"}}},
	} {
		h := tc.family.Clone()
		if h == nil {
			h = http.Header{}
		}
		if tc.auth != "" {
			h.Set("Authorization", tc.auth)
		}
		if w := f.do(t, tc.method, tc.target, "", h, ""); w.Code != tc.want {
			t.Errorf("%s %s: %d, want %d: %s", tc.method, tc.target, w.Code, tc.want, w.Body)
		}
	}
}

func TestReloadDurationMetric(t *testing.T) {
	obs := NewReloadObserver()
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.ReloadObserver = obs }})
	obs.ObserveReload("dir:x", 30*time.Millisecond, nil)
	obs.ObserveReload("dir:x", time.Millisecond, errors.New("broken"))
	wantMetrics(t, scrape(t, f.srv),
		`verdict_policy_reload_duration_seconds_count{result="ok"} 1`,
		`verdict_policy_reload_duration_seconds_count{result="error"} 1`,
	)
}
