package server

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestDecideBadInput(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	tests := []struct {
		name     string
		method   string
		body     string
		header   http.Header
		want     int
		wantCode string
	}{
		{name: "malformed JSON", body: `{"action":`, want: 400, wantCode: CodeInvalidRequest},
		{name: "not an object", body: `["orders:read"]`, want: 400, wantCode: CodeInvalidRequest},
		{name: "empty body", body: ``, want: 400, wantCode: CodeInvalidRequest},
		{name: "trailing data", body: `{"action":"orders:read"} {}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "unknown top-level field", body: `{"action":"orders:read","admin":true}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "unknown caller field", body: `{"action":"orders:read","caller":{"spiffe":"x"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "unknown action field", body: `{"action":{"name":"orders:read","verb":"x"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "unknown context field", body: `{"action":"orders:read","context":{"time":"x"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "action wrong type", body: `{"action":42}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "token wrong type", body: `{"action":"orders:read","token":7}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "resource wrong type", body: `{"action":"orders:read","resource":"orders/1"}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "attributes wrong type", body: `{"action":"orders:read","context":{"attributes":[1]}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "caller token and certificate", body: `{"action":"orders:read","caller":{"token":"a","certificate":"b"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "remote_addr not an address", body: `{"action":"orders:read","context":{"remote_addr":"10.0.0.7, 192.0.2.1"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "remote_addr with a bad port", body: `{"action":"orders:read","context":{"remote_addr":"10.0.0.7:99999"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "no action", body: `{}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "empty action", body: `{"action":""}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "a method without a path", body: `{"action":{"method":"GET"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "a path without a method", body: `{"action":{"path":"/orders/1"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "encoded separator in path", body: `{"action":{"method":"GET","path":"/orders%2F..%2Fadmin"}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "invalid UTF-8", body: "{\"action\":\"orders:\xff\"}", want: 400, wantCode: CodeInvalidRequest},
		{name: "too deep", body: `{"action":"orders:read","resource":` + deep + `}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "too deep in arrays", body: `{"action":"orders:read","resource":{"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "form content type", body: `{"action":"orders:read"}`, header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			want: 415, wantCode: CodeUnsupportedMedia},
		{name: "text content type", body: `{"action":"orders:read"}`, header: http.Header{"Content-Type": {"text/plain"}}, want: 415, wantCode: CodeUnsupportedMedia},
		{name: "gzip'd body", body: "\x1f\x8b\x08\x00", header: http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}},
			want: 415, wantCode: CodeUnsupportedMedia},
		{name: "no content type", body: `{"action":"orders:read"}`, header: http.Header{"Content-Type": {""}}, want: 415, wantCode: CodeUnsupportedMedia},
		{name: "latin-1 JSON", body: `{"action":"orders:read"}`, header: http.Header{"Content-Type": {"application/json; charset=iso-8859-1"}},
			want: 415, wantCode: CodeUnsupportedMedia},
		{name: "duplicate member", body: `{"action":"orders:delete","action":"catalog:read"}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "case-variant member", body: `{"Action":"catalog:read"}`, want: 400, wantCode: CodeInvalidRequest},
		{name: "oversized", body: `{"action":"orders:read","resource":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`, want: 413, wantCode: CodeTooLarge},
		{name: "wrong method GET", method: http.MethodGet, want: 405, wantCode: CodeMethodNotAllowed},
		{name: "wrong method PUT", method: http.MethodPut, body: `{"action":"orders:read"}`, want: 405, wantCode: CodeMethodNotAllowed},
		{name: "unknown route", method: http.MethodPost, want: 404, wantCode: CodeNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method, target := tc.method, "/v1/decide"
			if method == "" {
				method = http.MethodPost
			}
			if tc.wantCode == CodeNotFound {
				target = "/v1/decide/extra"
			}
			w := f.do(t, method, target, tc.body, tc.header, "")
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tc.want, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			if got["allow"] != false {
				t.Errorf("allow = %v, want false", got["allow"])
			}
			e, _ := got["error"].(map[string]any)
			if e["code"] != tc.wantCode || e["message"] == "" || e["message"] == nil {
				t.Errorf("error = %v, want code %q and a message", got["error"], tc.wantCode)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if tc.want == 405 && w.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", w.Header().Get("Allow"))
			}
		})
	}
	// The server still answers after all that.
	w := f.do(t, http.MethodPost, "/v1/decide", `{"action":"catalog:read"}`, nil, "")
	if w.Code != 200 || decodeAnswer(t, w.Body.Bytes())["allow"] != true {
		t.Fatalf("after bad input: %d %s", w.Code, w.Body)
	}
	if w := f.do(t, http.MethodGet, "/health/live", "", nil, ""); w.Code != 200 {
		t.Fatalf("live after bad input: %d", w.Code)
	}
}

func TestDecide(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	viewer := f.mint(t, "alice", "viewer")
	tests := []struct {
		name        string
		body        string
		wantAllow   bool
		wantReason  string
		wantHeaders bool
	}{
		{name: "viewer reads orders", body: `{"token":"` + viewer + `","action":"orders:read"}`,
			wantAllow: true, wantReason: "role viewer grants orders:read", wantHeaders: true},
		{name: "viewer may not delete", body: `{"token":"` + viewer + `","action":"orders:delete"}`,
			wantReason: "no role grants orders:delete"},
		{name: "anonymous public", body: `{"action":{"name":"catalog:read"}}`,
			wantAllow: true, wantReason: "anonymous access to catalog:read is public", wantHeaders: true},
		{name: "method and path", body: `{"token":"` + viewer + `","action":{"method":"GET","path":"/orders/42?x=1"}}`,
			wantAllow: true, wantReason: "role viewer grants orders:read", wantHeaders: true},
		{name: "invalid token", body: `{"token":"` + viewer[:len(viewer)-4] + `AAAA","action":"orders:read"}`,
			wantReason: "token: bad_signature"},
		{name: "malformed token", body: `{"token":"not.a.jwt","action":"catalog:read"}`,
			wantReason: "token: malformed"},
		{name: "invalid caller token", body: `{"caller":{"token":"x.y.z"},"action":"inventory:reserve"}`,
			wantReason: "caller: malformed"},
		{name: "body certificate from untrusted peer", body: `{"caller":{"certificate":"-----BEGIN CERTIFICATE-----"},"action":"inventory:reserve"}`,
			wantReason: "caller: a certificate in the request body is accepted only from a trusted proxy"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, http.MethodPost, "/v1/decide", tc.body, nil, "")
			if w.Code != 200 {
				t.Fatalf("status = %d, want 200; body %s", w.Code, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			if got["allow"] != tc.wantAllow {
				t.Errorf("allow = %v, want %v; %s", got["allow"], tc.wantAllow, w.Body)
			}
			reasons, _ := got["reasons"].([]any)
			if len(reasons) == 0 || reasons[0] != tc.wantReason {
				t.Errorf("reasons = %v, want [%q]", reasons, tc.wantReason)
			}
			if id, _ := got["decision_id"].(string); id == "" {
				t.Error("no decision_id")
			}
			if _, has := got["headers"]; has != tc.wantHeaders {
				t.Errorf("headers present = %v, want %v", has, tc.wantHeaders)
			}
		})
	}
	recs := f.log.records()
	if len(recs) != len(tests) {
		t.Fatalf("decision log has %d records, want %d", len(recs), len(tests))
	}
	for _, r := range recs {
		if strings.Contains(r.DecisionID+strings.Join(r.Reasons, ""), viewer) {
			t.Fatal("decision log record carries the token")
		}
	}
	if recs[0].SubjectID != "alice" || recs[0].Action.Name != "orders:read" || !recs[0].Allow {
		t.Errorf("first record = %+v", recs[0])
	}
}

func TestDecideNotReady(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	w := f.do(t, http.MethodPost, "/v1/decide", `{"action":"catalog:read"}`, nil, "")
	if w.Code != 503 {
		t.Fatalf("status = %d, want 503", w.Code)
	}
	got := decodeAnswer(t, w.Body.Bytes())
	e, _ := got["error"].(map[string]any)
	if got["allow"] != false || e["code"] != CodeNotReady || got["decision_id"] == nil {
		t.Errorf("answer = %s", w.Body)
	}
	if w := f.do(t, http.MethodGet, "/v1/check", "", nil, ""); w.Code != 503 {
		t.Errorf("check status = %d, want 503", w.Code)
	}
}

func TestDecidePolicyError(t *testing.T) {
	f := newFixture(t, fixtureOptions{noLoad: true})
	// A policy whose reasons break the contract at evaluation (a number,
	// from a value the type checker cannot know): 500 policy_error.
	if err := f.engine.Load(t.Context(), authztest.Policy(t, "", `package authz
allow := true
reasons := object.get(input.resource, "r", [1])
`)); err != nil {
		t.Fatal(err)
	}
	w := f.do(t, http.MethodPost, "/v1/decide", `{"action":"orders:read"}`, nil, "")
	if w.Code != 500 {
		t.Fatalf("status = %d, want 500; %s", w.Code, w.Body)
	}
	got := decodeAnswer(t, w.Body.Bytes())
	e, _ := got["error"].(map[string]any)
	if got["allow"] != false || e["code"] != CodePolicyError || got["decision_id"] == nil {
		t.Errorf("answer = %s", w.Body)
	}
	if w := f.do(t, http.MethodGet, "/v1/check", "", http.Header{"X-Verdict-Action": {"orders:read"}}, ""); w.Code != 500 {
		t.Errorf("check status = %d, want 500", w.Code)
	}
	recs := f.log.records()
	if len(recs) == 0 || recs[0].Error != CodePolicyError {
		t.Errorf("decision log = %+v", recs)
	}
}

func TestDecideBodyCertificate(t *testing.T) {
	f := newFixture(t, fixtureOptions{trusted: []string{"10.0.0.0/8"}})
	payments := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	other := authztest.NewCA(t, "other ca").Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	serverOnly := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	body := func(p []byte) string {
		return jsonBody(t, map[string]any{"caller": map[string]any{"certificate": string(p)}, "action": "inventory:reserve"})
	}
	tests := []struct {
		name       string
		body       string
		remote     string
		wantAllow  bool
		wantReason string
	}{
		{name: "trusted proxy, good chain", body: body(payments.CertPEM), remote: "10.1.2.3:5555",
			wantAllow: true, wantReason: "service payments may call inventory:reserve"},
		{name: "untrusted peer", body: body(payments.CertPEM), remote: "192.0.2.7:5555",
			wantReason: "caller: a certificate in the request body is accepted only from a trusted proxy"},
		{name: "wrong CA", body: body(other.CertPEM), remote: "10.1.2.3:5555",
			wantReason: "caller: forwarded certificate does not chain to the trust bundle for client authentication"},
		{name: "not for client auth", body: body(serverOnly.CertPEM), remote: "10.1.2.3:5555",
			wantReason: "caller: forwarded certificate does not chain to the trust bundle for client authentication"},
		{name: "garbage", body: body([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")), remote: "10.1.2.3:5555",
			wantReason: "caller: malformed forwarded certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(t, http.MethodPost, "/v1/decide", tc.body, nil, tc.remote)
			if w.Code != 200 {
				t.Fatalf("status = %d; %s", w.Code, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			reasons, _ := got["reasons"].([]any)
			if got["allow"] != tc.wantAllow || len(reasons) == 0 || reasons[0] != tc.wantReason {
				t.Errorf("got %s, want allow=%v reason %q", w.Body, tc.wantAllow, tc.wantReason)
			}
		})
	}
}

// TestDecideEmptyCallerIsAnonymous: over mTLS, a body without a caller
// member (or with null) is decided with the peer, the service asking, as
// its caller; "caller": {} names no caller. It was taken for the peer too,
// so a service asking for its end users had each decided as itself.
func TestDecideEmptyCallerIsAnonymous(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if err := f.engine.Load(t.Context(), authztest.Policy(t, "r1", `package authz
allow if input.caller.id == "spiffe://example.org/pep"
reasons contains input.caller.method
`)); err != nil {
		t.Fatal(err)
	}
	pep := f.ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://example.org/pep"}})
	peer := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{pep.Cert}, VerifiedChains: [][]*x509.Certificate{{pep.Cert, f.ca.Cert}}}
	for _, tc := range []struct {
		name       string
		body       string
		wantAllow  bool
		wantMethod string
	}{
		{name: "no caller member", body: `{"action":"a"}`, wantAllow: true, wantMethod: "mtls"},
		{name: "null", body: `{"caller":null,"action":"a"}`, wantAllow: true, wantMethod: "mtls"},
		{name: "empty object", body: `{"caller":{},"action":"a"}`, wantMethod: "none"},
		{name: "empty credentials", body: `{"caller":{"token":"","certificate":""},"action":"a"}`, wantMethod: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequestWithContext(t.Context(), http.MethodPost, "/v1/decide", strings.NewReader(tc.body))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr, r.TLS = "192.0.2.1:1234", peer
			w := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(w, r)
			if w.Code != 200 {
				t.Fatalf("status = %d; %s", w.Code, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			reasons, _ := got["reasons"].([]any)
			if got["allow"] != tc.wantAllow || len(reasons) != 1 || reasons[0] != tc.wantMethod {
				t.Errorf("got %s, want allow=%v and input.caller.method %q", w.Body, tc.wantAllow, tc.wantMethod)
			}
		})
	}
}

// TestDecideExplain: ?explain=true adds the explanation only where the
// server enables it; elsewhere it is a 400, and never a silent answer
// without the explanation that was asked for.
func TestDecideExplain(t *testing.T) {
	on := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Explain = true }})
	off := newFixture(t, fixtureOptions{})
	viewer := on.mint(t, "alice", "viewer")
	body := `{"token":"` + viewer + `","action":"orders:read"}`
	w := on.do(t, http.MethodPost, "/v1/decide?explain=true", body, nil, "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"explanation":[`) || !strings.Contains(w.Body.String(), `"location":"authz/authz.rego:31"`) {
		t.Errorf("explain on: %d %s", w.Code, w.Body)
	}
	if w := on.do(t, http.MethodPost, "/v1/decide", body, nil, ""); strings.Contains(w.Body.String(), "explanation") {
		t.Errorf("an explanation nobody asked for: %s", w.Body)
	}
	offViewer := off.mint(t, "alice", "viewer")
	if w := off.do(t, http.MethodPost, "/v1/decide?explain=true", `{"token":"`+offViewer+`","action":"orders:read"}`, nil, ""); w.Code != 400 ||
		!strings.Contains(w.Body.String(), "explain is not enabled") {
		t.Errorf("explain off: %d %s, want 400", w.Code, w.Body)
	}
	if w := on.do(t, http.MethodPost, "/v1/decide?explain=maybe", body, nil, ""); w.Code != 400 {
		t.Errorf("explain=maybe: %d, want 400", w.Code)
	}
}

// TestDecideRequestIDRule: a request ID in the body is held to the
// X-Request-Id header's rule (printable ASCII without spaces, at most 128
// bytes): another is dropped, and the header's ID stands instead.
func TestDecideRequestIDRule(t *testing.T) {
	f := newFixture(t, fixtureOptions{keepInput: true})
	for _, tc := range []struct{ name, body, want string }{
		{name: "valid", body: "req-7", want: "req-7"},
		{name: "a line break", body: "req-7\nforged: line", want: "hdr-1"},
		{name: "a space", body: "req 7", want: "hdr-1"},
		{name: "too long", body: strings.Repeat("r", 129), want: "hdr-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(f.log.records())
			body := jsonBody(t, map[string]any{"action": "catalog:read", "context": map[string]any{"request_id": tc.body}})
			if w := f.do(t, http.MethodPost, "/v1/decide", body, http.Header{"X-Request-Id": {"hdr-1"}}, ""); w.Code != http.StatusOK {
				t.Fatalf("decide: %d %s", w.Code, w.Body)
			}
			recs := f.log.records()
			if len(recs) != before+1 {
				t.Fatalf("%d records, want one more", len(recs)-before)
			}
			input, _ := ast.JSON(recs[len(recs)-1].Input)
			got := input.(map[string]any)["context"].(map[string]any)["request_id"]
			if got != tc.want {
				t.Errorf("input.context.request_id = %q, want %q", got, tc.want)
			}
		})
	}
}
