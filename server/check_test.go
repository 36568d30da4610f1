package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestCheck(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	viewer := f.mint(t, "alice", "viewer")
	bearer := "Bearer " + viewer
	tests := []struct {
		name        string
		method      string
		header      http.Header
		want        int
		wantAuth    string // WWW-Authenticate
		wantSubject string // X-Verdict-Subject on the answer
		wantReason  string
	}{
		{name: "traefik allow", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42?page=2"}},
			want: 200, wantSubject: "alice", wantReason: "role viewer grants orders:read"},
		{name: "nginx allow", header: http.Header{"Authorization": {bearer},
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/orders/42"}},
			want: 200, wantSubject: "alice", wantReason: "role viewer grants orders:read"},
		{name: "client-sent forwarded headers disagreeing with nginx's are refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog"},
			"X-Original-Method": {"DELETE"}, "X-Original-Uri": {"/orders/42"}},
			want: 400},
		{name: "both header families, even agreeing, are refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"get"}, "X-Forwarded-Uri": {"/orders/42"},
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/orders/42"}},
			want: 400},
		{name: "a client's method beside nginx's URI cannot turn a delete into a read", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Original-Uri": {"/orders/42"}},
			want: 400, wantReason: "both X-Forwarded-Method/-Uri and X-Original-Method/-URI"},
		{name: "a family without its method is refused", header: http.Header{"Authorization": {bearer},
			"X-Original-Uri": {"/orders/42"}},
			want: 400, wantReason: "must send both X-Original-Method and X-Original-URI"},
		{name: "a family without its URI is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}},
			want: 400, wantReason: "must send both X-Forwarded-Method and X-Forwarded-Uri"},
		{name: "a method override is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {"/orders"}, "X-Http-Method-Override": {"DELETE"}},
			want: 400, wantReason: "header X-Http-Method-Override is refused"},
		{name: "a method override written with '_' is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {"/orders"}, "X_HTTP_METHOD_OVERRIDE": {"DELETE"}},
			want: 400, wantReason: "method_override is refused"},
		{name: "a method override written with '.' is refused (PHP reads it as '_')", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {"/orders"}, "X.Http.Method.Override": {"DELETE"}},
			want: 400, wantReason: "header X.http.method.override is refused"},
		{name: "a path override is refused (Symfony, IIS)", header: http.Header{"Authorization": {bearer},
			"X-Original-Method": {"GET"}, "X-Original-Uri": {"/catalog"}, "X-Original-Url": {"/orders/42"}},
			want: 400, wantReason: "header X-Original-Url is refused"},
		{name: "a rewrite header is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog"}, "X-Rewrite-Url": {"/orders/42"}},
			want: 400, wantReason: "header X-Rewrite-Url is refused"},
		{name: "a _method query parameter is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"POST"}, "X-Forwarded-Uri": {"/orders/42?_method=DELETE"}},
			want: 400, wantReason: "a _method query parameter is refused"},
		{name: "an empty family header is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {""}, "X-Forwarded-Uri": {"/catalog"}},
			want: 400},
		{name: "repeated forwarded uri is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42", "/catalog"}},
			want: 400},
		{name: "an x-verdict- header written with '_' is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}, "X_verdict_roles": {"admin"}},
			want: 400, wantReason: "header X_verdict_roles is refused"},
		{name: "an x-verdict- header with '_' after its prefix is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}, "X-Verdict-User_id": {"root"}},
			want: 400, wantReason: "header X-Verdict-User_id is refused"},
		{name: "an x-verdict- header written with '.' is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}, "X.verdict.roles": {"admin"}},
			want: 400, wantReason: "header X.verdict.roles is refused"},
		{name: "an x-verdict- header with '.' after its prefix is refused", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}, "X-Verdict-User.id": {"root"}},
			want: 400, wantReason: "header X-Verdict-User.id is refused"},
		{name: "other names with '_' are not Verdict's", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}, "X_verdicts": {"1"}, "X_trace_id": {"1"}, "X.verdicts": {"1"}},
			want: 200, wantSubject: "alice"},
		{name: "denied", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/orders/42"}},
			want: 403, wantReason: "no role grants orders:delete"},
		{name: "X-Verdict-Action names the action", header: http.Header{"Authorization": {bearer},
			"X-Verdict-Action": {"orders:delete"}, "X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}},
			want: 403, wantReason: "no role grants orders:delete"},
		{name: "anonymous public", header: http.Header{
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/items"}},
			want: 200, wantSubject: "", wantReason: "anonymous access to catalog:read is public"},
		{name: "anonymous denied is 401", header: http.Header{
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"}},
			want: 401, wantAuth: "Bearer", wantReason: "anonymous access to orders:read is not allowed"},
		{name: "invalid token is 401", header: http.Header{"Authorization": {bearer[:len(bearer)-4] + "AAAA"},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/items"}},
			want: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: bad_signature"},
		{name: "malformed authorization is 401", header: http.Header{"Authorization": {"Basic YWxpY2U6cHc="},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/catalog/items"}},
			want: 401, wantAuth: `Bearer error="invalid_token"`, wantReason: "token: malformed"},
		{name: "own method and path", method: http.MethodPost, header: http.Header{"Authorization": {bearer}},
			want: 403},
		{name: "an unconfigured forwarded cert header is ignored", header: http.Header{"Authorization": {bearer},
			"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/orders/42"},
			"X-Ssl-Client-Cert": {authztest.EscapePEM(f.ca.PEM())}},
			want: 200, wantSubject: "alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			w := f.do(t, method, "/v1/check", "", tc.header, "")
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; %s", w.Code, tc.want, w.Body)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != tc.wantAuth {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantAuth)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			if got["allow"] != (tc.want == 200) {
				t.Errorf("allow = %v", got["allow"])
			}
			if _, has := got["headers"]; has {
				t.Error("forward-auth body carries headers")
			}
			if tc.wantReason != "" && tc.want == 400 {
				if e, _ := got["error"].(map[string]any); e == nil || !strings.Contains(e["message"].(string), tc.wantReason) {
					t.Errorf("error = %v, want a message containing %q", got["error"], tc.wantReason)
				}
			} else if tc.wantReason != "" {
				if reasons, _ := got["reasons"].([]any); len(reasons) == 0 || reasons[0] != tc.wantReason {
					t.Errorf("reasons = %v, want [%q]", got["reasons"], tc.wantReason)
				}
			}
			_, hasSubject := w.Header()["X-Verdict-Subject"]
			if tc.want == 200 {
				if !hasSubject || w.Header().Get("X-Verdict-Subject") != tc.wantSubject {
					t.Errorf("X-Verdict-Subject = %q (present %v), want %q", w.Header().Get("X-Verdict-Subject"), hasSubject, tc.wantSubject)
				}
			} else if hasSubject || w.Header().Get("X-Verdict-Action") != "" {
				t.Errorf("policy headers copied on %d: %v", w.Code, w.Header())
			}
			if w.Header().Get("X-Verdict-Decision-Id") == "" {
				t.Error("no X-Verdict-Decision-Id")
			}
		})
	}
}

// TestCheckHeaderInjection: headers a client sends are never reflected,
// and identity headers on an allow are the policy's, overwriting nothing
// the client could choose.
func TestCheckHeaderInjection(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	header := http.Header{
		"X-Forwarded-Method": {"GET"},
		"X-Forwarded-Uri":    {"/catalog/items"},
		"X-Verdict-Subject":  {"admin"},
		"X-Verdict-Roles":    {"admin"},
		"X-Injected":         {"yes"},
	}
	w := f.do(t, http.MethodGet, "/v1/check", "", header, "")
	if w.Code != 200 {
		t.Fatalf("status = %d", w.Code)
	}
	if got := w.Header().Values("X-Verdict-Subject"); len(got) != 1 || got[0] != "" {
		t.Errorf("X-Verdict-Subject = %q, want the policy's empty value only", got)
	}
	if got := w.Header().Values("X-Verdict-Roles"); len(got) != 1 || got[0] != "" {
		t.Errorf("X-Verdict-Roles = %q", got)
	}
	if w.Header().Get("X-Injected") != "" {
		t.Error("request header reflected")
	}

	// A CRLF-laden URI is refused (control characters in a path), and the
	// answer carries neither policy headers nor anything derived from the
	// request.
	header = http.Header{"X-Forwarded-Method": {"DELETE"}, "X-Forwarded-Uri": {"/orders/1%0d%0aX-Evil:%201"},
		"X-Verdict-Subject": {"admin"}}
	w = f.do(t, http.MethodGet, "/v1/check", "", header, "")
	if w.Code != 400 {
		t.Fatalf("status = %d, want 400; %s", w.Code, w.Body)
	}
	for k := range w.Header() {
		if strings.HasPrefix(k, "X-Verdict-") && k != "X-Verdict-Decision-Id" || k == "X-Evil" {
			t.Errorf("unexpected header %s on deny", k)
		}
	}
}

// TestCheckPolicyHeaderInjection: a policy whose header value carries CRLF
// is a policy error (500), never a 200 with the header split.
func TestCheckPolicyHeaderInjection(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	if err := f.engine.Load(t.Context(), authztest.Policy(t, "", `package authz
allow := true
headers := {"x-user": "bob\r\nx-admin: true"}
`)); err != nil {
		t.Fatal(err)
	}
	w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Verdict-Action": {"a:b"}}, "")
	if w.Code != 500 {
		t.Fatalf("status = %d, want 500", w.Code)
	}
	if w.Header().Get("X-User") != "" || w.Header().Get("X-Admin") != "" {
		t.Errorf("policy headers copied: %v", w.Header())
	}
}

// TestCheckRefusesShadowedPolicyHeader: a request carrying another
// spelling of a header the policy sets on its allow (X_User_Id, X.User.Id
// beside x-user-id) is refused, 400, and logged as that refusal: the
// proxy's copy of the policy's header replaces only its own spelling, a
// CGI-style upstream reads the client's as the same header, and a
// forward-auth answer cannot remove it. The policy's own spelling, in any
// case, is what the proxy's copy replaces.
func TestCheckRefusesShadowedPolicyHeader(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	if err := f.engine.Load(t.Context(), authztest.Policy(t, "", `package authz
allow if input.action.name != "deny"
headers := {"x-user-id": "alice"}
`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, value, action string
		want                int
	}{
		{"X_User_Id", "root", "a:b", 400},
		{"X.User.Id", "root", "a:b", 400},
		{"x-user_id", "root", "a:b", 400},
		{"X-User-Id", "root", "a:b", 200},
		{"x-user-id", "root", "a:b", 200},
		{"X_User_Idx", "root", "a:b", 200},
		{"X_User", "root", "a:b", 200},
		{"X_User_Id", "root", "deny", 401}, // no headers on a deny (anonymous)
	} {
		t.Run(tc.name+" "+tc.action, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/v1/check", nil)
			r.Header["X-Verdict-Action"] = []string{tc.action}
			r.Header[tc.name] = []string{tc.value}
			w := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; %s", w.Code, tc.want, w.Body)
			}
			recs := f.log.records()
			last := recs[len(recs)-1]
			switch tc.want {
			case 400:
				if w.Header().Get("X-User-Id") != "" || !strings.Contains(w.Body.String(), tc.name+" is refused") {
					t.Errorf("answer %v %s; want no policy header and the refusal named", w.Header(), w.Body)
				}
				if last.Allow || len(last.Reasons) != 1 || !strings.HasPrefix(last.Reasons[0], "invalid_request: header "+tc.name) {
					t.Errorf("logged allow=%v %q, want the refusal", last.Allow, last.Reasons)
				}
			case 200:
				if got := w.Header().Values("X-User-Id"); len(got) != 1 || got[0] != "alice" {
					t.Errorf("X-User-Id = %q, want the policy's", got)
				}
			}
		})
	}
}

// TestDecisionIDIsVerdicts: a policy header named like the decision's ID
// (in any case) is left out of the decision's headers: it does not replace
// the ID on the forward-auth answer, nor stand in /v1/decide's headers for
// the service to pass on; the real ID is what the caller and the decision
// log agree on.
func TestDecisionIDIsVerdicts(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	if err := f.engine.Load(t.Context(), authztest.Policy(t, "", "package authz\n\nallow := true\n\nheaders := {\"X-Verdict-Decision-ID\": \"forged\", \"x-user\": \"a\"}\n")); err != nil {
		t.Fatal(err)
	}
	w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Forwarded-Method": {"GET"}, "X-Forwarded-Uri": {"/x"}}, "")
	if got := w.Header().Values("X-Verdict-Decision-Id"); w.Code != 200 || len(got) != 1 || got[0] == "forged" || got[0] == "" || w.Header().Get("X-User") != "a" {
		t.Errorf("status %d, X-Verdict-Decision-Id %q; want the decision's own ID only, and the policy's other headers", w.Code, got)
	}
	w = f.do(t, http.MethodPost, "/v1/decide", `{"action":"x"}`, nil, "")
	if body := w.Body.String(); w.Code != 200 || strings.Contains(body, "forged") || !strings.Contains(body, `"headers":{"x-user":"a"}`) {
		t.Errorf("/v1/decide: %d %s; want the policy's headers without the decision ID", w.Code, body)
	}
}
