package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// echoPolicy allows the actions named "allow*", fails on "fail", and puts
// what it saw of the input document in its one reason, as JSON.
const echoPolicy = `package authz

default allow := false

allow if startswith(input.action.name, "allow")

allow if conflict == 1

conflict := 1 if input.action.name == "fail"

conflict := 2 if input.action.name == "fail"

reasons := [json.marshal({
	"subject": input.subject,
	"caller": input.caller,
	"action": input.action,
	"resource": input.resource,
	"attributes": object.get(input.context, "attributes", null),
	"request_id": input.context.request_id,
})]
`

// trustedPeer is the peer address the AuthZEN tests trust.
const trustedPeer = "10.1.2.3:4567"

// azFixture is a server with the AuthZEN endpoints on echoPolicy, trusting
// 10.0.0.0/8 and the mTLS caller spiffe://example.org/pep.
type azFixture struct {
	srv *Server
	log *memLog
	ca  *authztest.CA
}

// newEchoEngine is an engine serving echoPolicy as revision rev-1, or
// nothing yet unless load.
func newEchoEngine(t testing.TB, load bool) *authz.Engine {
	t.Helper()
	e, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if load {
		if err := e.Load(t.Context(), authztest.Policy(t, "rev-1", echoPolicy)); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func newAZFixture(t testing.TB, load bool, mutate func(*AuthZEN)) *azFixture {
	t.Helper()
	e := newEchoEngine(t, load)
	az := &AuthZEN{
		TrustedPeers:   []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		TrustedCallers: []string{"spiffe://example.org/pep"},
	}
	if mutate != nil {
		mutate(az)
	}
	f := &azFixture{log: &memLog{}, ca: authztest.NewCA(t, "authzen test ca")}
	var err error
	if f.srv, err = New(Options{Engine: e, DecisionLog: f.log, AuthZEN: az}); err != nil {
		t.Fatal(err)
	}
	return f
}

// azRequest describes one request to the fixture.
type azRequest struct {
	method, path, body string
	header             http.Header
	remote             string // default trustedPeer
	tls                *tls.ConnectionState
}

func (f *azFixture) do(t testing.TB, q azRequest) *httptest.ResponseRecorder {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	r := httptest.NewRequest(q.method, q.path, strings.NewReader(q.body))
	if q.method == http.MethodPost {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range q.header {
		r.Header.Del(k)
		for _, v := range vs {
			r.Header.Add(k, v)
		}
	}
	r.RemoteAddr = trustedPeer
	if q.remote != "" {
		r.RemoteAddr = q.remote
	}
	r.TLS = q.tls
	w := httptest.NewRecorder()
	f.srv.Handler().ServeHTTP(w, r)
	return w
}

// expect sends q like do and fails t unless the answer's status is want.
func (f *azFixture) expect(t testing.TB, q azRequest, want int) *httptest.ResponseRecorder {
	t.Helper()
	w := f.do(t, q)
	if w.Code != want {
		t.Fatalf("%s %s: status = %d, want %d; body %s", q.path, q.body, w.Code, want, w.Body)
	}
	return w
}

// azDecision is one AuthZEN decision as answered.
type azDecision struct {
	Decision *bool `json:"decision"`
	Context  struct {
		DecisionID string   `json:"decision_id"`
		Reasons    []string `json:"reasons"`
		Revision   string   `json:"revision"`
		Error      *struct {
			Status  int    `json:"status"`
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	} `json:"context"`
}

// echoed is what echoPolicy saw, from a decision's reason.
func (d azDecision) echoed(t *testing.T) map[string]any {
	t.Helper()
	if len(d.Context.Reasons) != 1 {
		t.Fatalf("reasons = %q, want echoPolicy's one", d.Context.Reasons)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(d.Context.Reasons[0]), &m); err != nil {
		t.Fatalf("reason is not the echoed input: %v", err)
	}
	return m
}

func decodeJSON[T any](t *testing.T, w *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, w.Body)
	}
	return v
}

func TestAuthZENEvaluationMapping(t *testing.T) {
	f := newAZFixture(t, true, nil)
	w := f.expect(t, azRequest{path: "/access/v1/evaluation", header: http.Header{"X-Request-Id": {"req-42"}}, body: `{
		"subject": {"type": "user", "id": "alice@example.com", "properties": {"department": "Sales", "n": 1.5}},
		"action": {"name": "allow_read", "properties": {"method": "GET"}},
		"resource": {"type": "document", "id": "123", "properties": {"owner": "bob"}},
		"context": {"time": "1985-10-26T01:22-07:00"}}`}, 200)
	if got := w.Header().Get("X-Request-Id"); got != "req-42" {
		t.Errorf("X-Request-Id = %q, want it echoed", got)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	d := decodeJSON[azDecision](t, w)
	if d.Decision == nil || !*d.Decision || d.Context.DecisionID == "" || d.Context.Revision != "rev-1" || d.Context.Error != nil {
		t.Fatalf("answer = %s", w.Body)
	}
	want := map[string]any{
		"subject": map[string]any{"authenticated": true, "method": "asserted", "type": "user", "id": "alice@example.com",
			"properties": map[string]any{"department": "Sales", "n": 1.5}},
		"caller":     map[string]any{"authenticated": false, "method": "none"},
		"action":     map[string]any{"name": "allow_read", "properties": map[string]any{"method": "GET"}},
		"resource":   map[string]any{"type": "document", "id": "123", "properties": map[string]any{"owner": "bob"}},
		"attributes": map[string]any{"time": "1985-10-26T01:22-07:00"},
		"request_id": "req-42",
	}
	if diff := cmp.Diff(want, d.echoed(t)); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}
	recs := f.log.records()
	if len(recs) != 1 || recs[0].API != "authzen" || recs[0].SubjectID != "alice@example.com" ||
		recs[0].Action.Name != "allow_read" || recs[0].DecisionID != d.Context.DecisionID {
		t.Errorf("decision log = %+v", recs)
	}
}

// TestAuthZENMinimal: no properties, no context, no X-Request-ID. Absent
// members stay absent in the input, and the request ID is the decision's.
func TestAuthZENMinimal(t *testing.T) {
	f := newAZFixture(t, true, nil)
	w := f.expect(t, azRequest{path: "/access/v1/evaluation",
		body: `{"subject":{"type":"user","id":"a"},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, 200)
	if got := w.Header().Get("X-Request-Id"); got != "" {
		t.Errorf("X-Request-Id = %q without one in the request", got)
	}
	d := decodeJSON[azDecision](t, w)
	if d.Decision == nil || *d.Decision {
		t.Errorf("decision = %s, want false", w.Body)
	}
	want := map[string]any{
		"subject":    map[string]any{"authenticated": true, "method": "asserted", "type": "user", "id": "a"},
		"caller":     map[string]any{"authenticated": false, "method": "none"},
		"action":     map[string]any{"name": "read"},
		"resource":   map[string]any{"type": "doc", "id": "1"},
		"attributes": nil,
		"request_id": d.Context.DecisionID,
	}
	if diff := cmp.Diff(want, d.echoed(t)); diff != "" {
		t.Errorf("input (-want +got):\n%s", diff)
	}
}

// TestAuthZENUnknownMembersIgnored: the 1.0 text says receivers MUST
// ignore unknown fields, at every level; nulls read as absent.
func TestAuthZENUnknownMembersIgnored(t *testing.T) {
	f := newAZFixture(t, true, nil)
	body := `{"subject":{"type":"user","id":"rick","identity":"CiRm","x":{"deep":[1,{"a":null}]}},
		"action":{"name":"allow_it","verb":"GET"},
		"resource":{"type":"user","id":"beth","userID":"beth","properties":null},
		"context":null, "evaluations":[{"bogus":1}], "options":"x", "extension":{"v":true}}`
	w := f.expect(t, azRequest{path: "/access/v1/evaluation", body: body}, 200)
	d := decodeJSON[azDecision](t, w)
	got := d.echoed(t)
	if diff := cmp.Diff(map[string]any{"type": "user", "id": "beth"}, got["resource"]); diff != "" {
		t.Errorf("resource (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]any{"authenticated": true, "method": "asserted", "type": "user", "id": "rick"}, got["subject"]); diff != "" {
		t.Errorf("subject (-want +got):\n%s", diff)
	}
}

func TestAuthZENErrors(t *testing.T) {
	f := newAZFixture(t, true, nil)
	const ok = `"subject":{"type":"user","id":"a"},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}`
	deep := strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40)
	many := `{` + ok + `,"evaluations":[` + strings.TrimSuffix(strings.Repeat(`{},`, 101), ",") + `]}`
	tests := []struct {
		name     string
		q        azRequest
		want     int
		wantCode string
	}{
		{name: "untrusted peer", q: azRequest{body: `{` + ok + `}`, remote: "192.0.2.1:1"}, want: 403, wantCode: CodeForbidden},
		{name: "untrusted peer, batch", q: azRequest{path: "/access/v1/evaluations", body: `{` + ok + `}`, remote: "192.0.2.1:1"}, want: 403, wantCode: CodeForbidden},
		{name: "untrusted peer, body never read", q: azRequest{body: `not json`, remote: "[2001:db8::1]:1"}, want: 403, wantCode: CodeForbidden},
		{name: "not JSON content", q: azRequest{body: `{` + ok + `}`, header: http.Header{"Content-Type": {"text/plain"}}}, want: 415, wantCode: CodeUnsupportedMedia},
		{name: "no content type", q: azRequest{body: `{` + ok + `}`, header: http.Header{"Content-Type": {""}}}, want: 415, wantCode: CodeUnsupportedMedia},
		{name: "malformed JSON", q: azRequest{body: `{"subject":`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "empty body", q: azRequest{body: ``}, want: 400, wantCode: CodeInvalidRequest},
		{name: "not an object", q: azRequest{body: `[]`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "trailing data", q: azRequest{body: `{` + ok + `} {}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "no subject", q: azRequest{body: `{"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "null subject", q: azRequest{body: `{"subject":null,"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "subject without id", q: azRequest{body: `{"subject":{"type":"user"},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "subject with empty type", q: azRequest{body: `{"subject":{"type":"","id":"a"},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "subject id a number", q: azRequest{body: `{"subject":{"type":"user","id":7},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "subject a string", q: azRequest{body: `{"subject":"alice","action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "subject properties not an object", q: azRequest{body: `{"subject":{"type":"user","id":"a","properties":[1]},"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "no action", q: azRequest{body: `{"subject":{"type":"user","id":"a"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "action without name", q: azRequest{body: `{"subject":{"type":"user","id":"a"},"action":{"properties":{}},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "action a string", q: azRequest{body: `{"subject":{"type":"user","id":"a"},"action":"read","resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "no resource", q: azRequest{body: `{"subject":{"type":"user","id":"a"},"action":{"name":"read"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "resource without type", q: azRequest{body: `{"subject":{"type":"user","id":"a"},"action":{"name":"read"},"resource":{"id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "context not an object", q: azRequest{body: `{` + ok + `,"context":"now"}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "duplicate member", q: azRequest{body: `{` + ok + `,"subject":{"type":"user","id":"root"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "duplicate member in an ignored one", q: azRequest{body: `{` + ok + `,"x":{"a":1,"a":2}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "too deep", q: azRequest{body: `{` + ok + `,"context":` + deep + `}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "too deep in an ignored member", q: azRequest{body: `{` + ok + `,"x":` + deep + `}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "invalid UTF-8", q: azRequest{body: "{\"subject\":{\"type\":\"user\",\"id\":\"\xff\"},\"action\":{\"name\":\"read\"},\"resource\":{\"type\":\"doc\",\"id\":\"1\"}}"}, want: 400, wantCode: CodeInvalidRequest},
		{name: "oversized", q: azRequest{body: `{` + ok + `,"context":{"x":"` + strings.Repeat("a", 70<<10) + `"}}`}, want: 413, wantCode: CodeTooLarge},
		{name: "GET evaluation", q: azRequest{method: http.MethodGet}, want: 405, wantCode: CodeMethodNotAllowed},
		{name: "batch: item without resource, no default", q: azRequest{path: "/access/v1/evaluations",
			body: `{"subject":{"type":"user","id":"a"},"action":{"name":"read"},"evaluations":[{"resource":{"type":"doc","id":"1"}},{}]}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: item resource incomplete", q: azRequest{path: "/access/v1/evaluations",
			body: `{` + ok + `,"evaluations":[{"resource":{"type":"doc"}}]}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: too many items", q: azRequest{path: "/access/v1/evaluations", body: many}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: unknown semantic", q: azRequest{path: "/access/v1/evaluations",
			body: `{` + ok + `,"evaluations":[{}],"options":{"evaluations_semantic":"first_wins"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: semantic not a string", q: azRequest{path: "/access/v1/evaluations",
			body: `{` + ok + `,"evaluations":[{}],"options":{"evaluations_semantic":1}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: evaluations not an array", q: azRequest{path: "/access/v1/evaluations", body: `{` + ok + `,"evaluations":{}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: item not an object", q: azRequest{path: "/access/v1/evaluations", body: `{` + ok + `,"evaluations":[{},null]}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "batch: no subject anywhere", q: azRequest{path: "/access/v1/evaluations",
			body: `{"action":{"name":"read"},"resource":{"type":"doc","id":"1"}}`}, want: 400, wantCode: CodeInvalidRequest},
		{name: "GET evaluations", q: azRequest{method: http.MethodGet, path: "/access/v1/evaluations"}, want: 405, wantCode: CodeMethodNotAllowed},
		{name: "POST metadata", q: azRequest{path: "/.well-known/authzen-configuration", body: `{}`}, want: 405, wantCode: CodeMethodNotAllowed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			if q.path == "" {
				q.path = "/access/v1/evaluation"
			}
			q.header = q.header.Clone()
			if q.header == nil {
				q.header = http.Header{}
			}
			q.header.Set("X-Request-Id", "r-"+strings.ReplaceAll(tc.name, " ", "_"))
			w := f.do(t, q)
			if w.Code != tc.want {
				t.Fatalf("status = %d, want %d; body %s", w.Code, tc.want, w.Body)
			}
			got := decodeAnswer(t, w.Body.Bytes())
			e, _ := got["error"].(map[string]any)
			if e["code"] != tc.wantCode || e["message"] == "" || e["message"] == nil {
				t.Errorf("error = %v, want code %q and a message", got["error"], tc.wantCode)
			}
			if got["allow"] != false || got["decision"] != nil {
				t.Errorf("error body = %s: want the server's error shape, never a decision", w.Body)
			}
			if id := w.Header().Get("X-Request-Id"); id != q.header.Get("X-Request-Id") {
				t.Errorf("X-Request-Id = %q, want it echoed on errors too", id)
			}
		})
	}
	if n := len(f.log.records()); n != 0 {
		t.Errorf("%d decisions recorded; a refused request is not evaluated", n)
	}
}

func TestAuthZENDisabled(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations", "/.well-known/authzen-configuration"} {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			w := f.do(t, method, path, `{}`, nil, "10.0.0.1:1")
			if w.Code != 404 {
				t.Errorf("%s %s = %d without AuthZEN, want 404", method, path, w.Code)
			}
		}
	}
}

func TestAuthZENTrust(t *testing.T) {
	f := newAZFixture(t, true, nil)
	verified := func(l authztest.Leaf) *tls.ConnectionState {
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{l.Cert}, VerifiedChains: [][]*x509.Certificate{{l.Cert, f.ca.Cert}}}
	}
	pep := f.ca.Issue(t, authztest.LeafOptions{CommonName: "pep", DNSNames: []string{"pep.svc"}, URIs: []string{"spiffe://example.org/pep"}})
	other := f.ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://example.org/other"}})
	dnsNamed := f.ca.Issue(t, authztest.LeafOptions{CommonName: "spiffe://example.org/pep", DNSNames: []string{"pep.svc"}})
	const body = `{"subject":{"type":"user","id":"a"},"action":{"name":"allow"},"resource":{"type":"doc","id":"1"}}`
	tests := []struct {
		name   string
		remote string
		tls    *tls.ConnectionState
		want   int
	}{
		{name: "trusted peer", remote: "10.9.9.9:1", want: 200},
		{name: "trusted peer, IPv4-mapped", remote: "[::ffff:10.9.9.9]:1", want: 200},
		{name: "untrusted peer", remote: "11.0.0.1:1", want: 403},
		{name: "untrusted peer with a malformed address", remote: "nonsense", want: 403},
		{name: "trusted caller", remote: "192.0.2.1:1", tls: verified(pep), want: 200},
		{name: "other caller", remote: "192.0.2.1:1", tls: verified(other), want: 403},
		{name: "caller id is the SPIFFE ID, not the CN", remote: "192.0.2.1:1", tls: verified(dnsNamed), want: 403},
		{name: "certificate the handshake did not verify", remote: "192.0.2.1:1",
			tls: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{pep.Cert}}, want: 403},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
				w := f.do(t, azRequest{path: path, body: body, remote: tc.remote, tls: tc.tls})
				if w.Code != tc.want {
					t.Errorf("%s: status = %d, want %d; body %s", path, w.Code, tc.want, w.Body)
				}
			}
		})
	}
	// The trusted caller is also input.caller, as on /v1/decide.
	w := f.do(t, azRequest{path: "/access/v1/evaluation", body: body, remote: "192.0.2.1:1", tls: verified(pep)})
	caller, _ := decodeJSON[azDecision](t, w).echoed(t)["caller"].(map[string]any)
	if caller["id"] != "spiffe://example.org/pep" || caller["method"] != "mtls" {
		t.Errorf("input.caller = %v, want the PEP's certificate", caller)
	}
	// Anyone may read the metadata.
	if w := f.do(t, azRequest{method: http.MethodGet, path: "/.well-known/authzen-configuration", remote: "192.0.2.1:1"}); w.Code != 200 {
		t.Errorf("metadata from an untrusted peer = %d, want 200", w.Code)
	}
}

// batchAnswer is a batch's answer.
type batchAnswer struct {
	Decision    *bool        `json:"decision"`
	Evaluations []azDecision `json:"evaluations"`
}

func TestAuthZENBatch(t *testing.T) {
	f := newAZFixture(t, true, nil)
	// item builds a batch item for an action.
	item := func(action string) string { return `{"action":{"name":"` + action + `"}}` }
	batch := func(semantic string, actions ...string) string {
		items := make([]string, len(actions))
		for i, a := range actions {
			items[i] = item(a)
		}
		opts := ""
		if semantic != "" {
			opts = `,"options":{"evaluations_semantic":"` + semantic + `","another_option":"value"}`
		}
		return `{"subject":{"type":"user","id":"a"},"resource":{"type":"doc","id":"1"},"evaluations":[` +
			strings.Join(items, ",") + `]` + opts + `}`
	}
	type result struct {
		decision bool
		status   int // of the item's context.error; 0 for none
	}
	tests := []struct {
		name string
		body string
		want []result
	}{
		{name: "execute_all by default", body: batch("", "allow", "deny", "allow"), want: []result{{true, 0}, {false, 0}, {true, 0}}},
		{name: "execute_all", body: batch("execute_all", "allow", "deny", "allow"), want: []result{{true, 0}, {false, 0}, {true, 0}}},
		{name: "deny_on_first_deny stops at the deny", body: batch("deny_on_first_deny", "allow", "deny", "allow"), want: []result{{true, 0}, {false, 0}}},
		{name: "deny_on_first_deny, no deny", body: batch("deny_on_first_deny", "allow", "allow"), want: []result{{true, 0}, {true, 0}}},
		{name: "deny_on_first_deny stops at a failure", body: batch("deny_on_first_deny", "allow", "fail", "allow"), want: []result{{true, 0}, {false, 500}}},
		{name: "permit_on_first_permit stops at the permit", body: batch("permit_on_first_permit", "deny", "allow", "deny"), want: []result{{false, 0}, {true, 0}}},
		{name: "permit_on_first_permit, no permit", body: batch("permit_on_first_permit", "deny", "fail", "deny"), want: []result{{false, 0}, {false, 500}, {false, 0}}},
		{name: "a failed item is a deny with its error", body: batch("", "fail", "allow"), want: []result{{false, 500}, {true, 0}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := f.expect(t, azRequest{path: "/access/v1/evaluations", body: tc.body}, 200)
			a := decodeJSON[batchAnswer](t, w)
			if a.Decision != nil {
				t.Errorf("top-level decision = %v; a batch answers only evaluations", *a.Decision)
			}
			got := make([]result, len(a.Evaluations))
			for i, e := range a.Evaluations {
				if e.Decision == nil || e.Context.DecisionID == "" || e.Context.Revision != "rev-1" {
					t.Fatalf("item %d = %+v", i, e)
				}
				got[i].decision = *e.Decision
				if e.Context.Error != nil {
					got[i].status = e.Context.Error.Status
					if e.Context.Error.Code != CodePolicyError || e.Context.Error.Message == "" {
						t.Errorf("item %d error = %+v", i, e.Context.Error)
					}
				}
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(result{})); diff != "" {
				t.Errorf("evaluations (-want +got):\n%s", diff)
			}
		})
	}
}

// TestAuthZENBatchDefaults: top-level members are defaults; an item's
// member replaces the default's whole (no merging of properties).
func TestAuthZENBatchDefaults(t *testing.T) {
	f := newAZFixture(t, true, nil)
	body := `{
		"subject": {"type": "user", "id": "alice", "properties": {"dept": "sales"}},
		"action": {"name": "allow_read"},
		"resource": {},
		"context": {"tenant": "t1"},
		"evaluations": [
			{"resource": {"type": "doc", "id": "1"}},
			{"resource": {"type": "doc", "id": "2"}, "subject": {"type": "user", "id": "bob"}, "context": {}},
			{"resource": {"type": "doc", "id": "3", "properties": {"p": true}}, "action": {"name": "edit", "properties": {"v": 2}}}
		]}`
	w := f.expect(t, azRequest{path: "/access/v1/evaluations", body: body, header: http.Header{"X-Request-Id": {"batch-7"}}}, 200)
	if w.Header().Get("X-Request-Id") != "batch-7" {
		t.Errorf("X-Request-Id = %q", w.Header().Get("X-Request-Id"))
	}
	a := decodeJSON[batchAnswer](t, w)
	if len(a.Evaluations) != 3 {
		t.Fatalf("answer = %s", w.Body)
	}
	alice := map[string]any{"authenticated": true, "method": "asserted", "type": "user", "id": "alice", "properties": map[string]any{"dept": "sales"}}
	want := []map[string]any{
		{"subject": alice, "action": map[string]any{"name": "allow_read"}, "resource": map[string]any{"type": "doc", "id": "1"},
			"attributes": map[string]any{"tenant": "t1"}},
		{"subject": map[string]any{"authenticated": true, "method": "asserted", "type": "user", "id": "bob"},
			"action": map[string]any{"name": "allow_read"}, "resource": map[string]any{"type": "doc", "id": "2"}, "attributes": nil},
		{"subject": alice, "action": map[string]any{"name": "edit", "properties": map[string]any{"v": 2.0}},
			"resource": map[string]any{"type": "doc", "id": "3", "properties": map[string]any{"p": true}}, "attributes": map[string]any{"tenant": "t1"}},
	}
	wantDecision := []bool{true, true, false}
	for i, e := range a.Evaluations {
		got := e.echoed(t)
		if got["request_id"] != "batch-7" {
			t.Errorf("item %d request_id = %v, want the header's", i, got["request_id"])
		}
		delete(got, "request_id")
		delete(got, "caller")
		if diff := cmp.Diff(want[i], got); diff != "" {
			t.Errorf("item %d input (-want +got):\n%s", i, diff)
		}
		if *e.Decision != wantDecision[i] {
			t.Errorf("item %d decision = %v, want %v", i, *e.Decision, wantDecision[i])
		}
	}
	if n := len(f.log.records()); n != 3 {
		t.Errorf("%d decisions logged, want one per item", n)
	}
}

// TestAuthZENBatchWithoutItems: without an evaluations array, or with an
// empty one, /access/v1/evaluations behaves as /access/v1/evaluation.
func TestAuthZENBatchWithoutItems(t *testing.T) {
	f := newAZFixture(t, true, nil)
	for _, extra := range []string{``, `,"evaluations":[]`, `,"evaluations":null`, `,"options":{"evaluations_semantic":"deny_on_first_deny"}`} {
		body := `{"subject":{"type":"user","id":"a"},"action":{"name":"allow"},"resource":{"type":"doc","id":"1"}` + extra + `}`
		w := f.expect(t, azRequest{path: "/access/v1/evaluations", body: body}, 200)
		a := decodeJSON[batchAnswer](t, w)
		if a.Decision == nil || !*a.Decision || a.Evaluations != nil {
			t.Errorf("%s: answer = %s, want a single decision", extra, w.Body)
		}
	}
}

func TestAuthZENNotReady(t *testing.T) {
	f := newAZFixture(t, false, nil)
	const ok = `"subject":{"type":"user","id":"a"},"action":{"name":"allow"},"resource":{"type":"doc","id":"1"}`
	for _, q := range []azRequest{
		{path: "/access/v1/evaluation", body: `{` + ok + `}`},
		{path: "/access/v1/evaluations", body: `{` + ok + `,"evaluations":[{},{}]}`},
	} {
		w := f.expect(t, q, 503)
		if e, _ := decodeAnswer(t, w.Body.Bytes())["error"].(map[string]any); e["code"] != CodeNotReady {
			t.Errorf("%s: body %s", q.path, w.Body)
		}
	}
}

func TestAuthZENPolicyFailureSingle(t *testing.T) {
	f := newAZFixture(t, true, nil)
	w := f.expect(t, azRequest{path: "/access/v1/evaluation",
		body: `{"subject":{"type":"user","id":"a"},"action":{"name":"fail"},"resource":{"type":"doc","id":"1"}}`}, 500)
	got := decodeAnswer(t, w.Body.Bytes())
	if e, _ := got["error"].(map[string]any); e["code"] != CodePolicyError || got["decision_id"] == "" {
		t.Errorf("body %s", w.Body)
	}
}

func TestAuthZENMetadata(t *testing.T) {
	tests := []struct {
		name      string
		baseURL   string
		host      string
		tls       bool
		want      string // the base of every URL
		wantCache string
	}{
		{name: "from the request", host: "pdp.internal:8181", want: "http://pdp.internal:8181", wantCache: "no-store"},
		{name: "from the request, TLS", host: "pdp.internal", tls: true, want: "https://pdp.internal", wantCache: "no-store"},
		{name: "configured", baseURL: "https://pdp.example.com/", host: "attacker.example", want: "https://pdp.example.com", wantCache: "max-age=3600"},
		{name: "configured with a path", baseURL: "https://gw.example.com/pdp", host: "x", want: "https://gw.example.com/pdp", wantCache: "max-age=3600"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newAZFixture(t, true, func(a *AuthZEN) { a.BaseURL = tc.baseURL })
			r := httptest.NewRequest(http.MethodGet, "/.well-known/authzen-configuration", nil)
			r.Host = tc.host
			r.Header.Set("X-Request-Id", "md-1")
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			w := httptest.NewRecorder()
			f.srv.Handler().ServeHTTP(w, r)
			if w.Code != 200 {
				t.Fatalf("status = %d; body %s", w.Code, w.Body)
			}
			got := decodeJSON[map[string]string](t, w)
			want := map[string]string{
				"policy_decision_point":       tc.want,
				"access_evaluation_endpoint":  tc.want + "/access/v1/evaluation",
				"access_evaluations_endpoint": tc.want + "/access/v1/evaluations",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("metadata (-want +got):\n%s", diff)
			}
			if cc := w.Header().Get("Cache-Control"); cc != tc.wantCache {
				t.Errorf("Cache-Control = %q, want %q", cc, tc.wantCache)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if id := w.Header().Get("X-Request-Id"); id != "md-1" {
				t.Errorf("X-Request-Id = %q", id)
			}
		})
	}
	t.Run("no usable Host", func(t *testing.T) {
		f := newAZFixture(t, true, nil)
		r := httptest.NewRequest(http.MethodGet, "/.well-known/authzen-configuration", nil)
		r.Host = ""
		w := httptest.NewRecorder()
		f.srv.Handler().ServeHTTP(w, r)
		if w.Code != 400 {
			t.Errorf("status = %d, want 400", w.Code)
		}
	})
}

func TestNewAuthZENOptions(t *testing.T) {
	e, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, az := range []AuthZEN{
		{BaseURL: "pdp.example.com"},
		{BaseURL: "https://pdp.example.com/?x=1"},
		{BaseURL: "https://pdp.example.com/#f"},
		{BaseURL: "https://u@pdp.example.com"},
		{BaseURL: "mailto:pdp@example.com"},
		{MaxEvaluations: -1},
		{TrustedPeers: []netip.Prefix{{}}},
		{TrustedCallers: []string{""}},
	} {
		if _, err := New(Options{Engine: e, AuthZEN: &az}); !errors.Is(err, ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions", az, err)
		}
	}
}

// reloadingLog is a decision log that loads next into engine when it
// records its first decision: a reload landing in the middle of a batch.
type reloadingLog struct {
	memLog
	engine *authz.Engine
	next   *bundles.Snapshot
	once   sync.Once
	err    error
}

func (l *reloadingLog) Log(r decisionlog.Record) bool {
	l.once.Do(func() { l.err = l.engine.Load(context.Background(), l.next) })
	return l.memLog.Log(r)
}

// TestAuthZENBatchOnOneRevision: a reload during a batch does not split it
// between two policies: every item is decided by the revision serving when
// the batch began; the next batch sees the new one.
func TestAuthZENBatchOnOneRevision(t *testing.T) {
	e := newEchoEngine(t, true)
	var err error
	dlog := &reloadingLog{engine: e, next: authztest.Policy(t, "rev-2", "package authz\n\ndefault allow := false\n")}
	f := &azFixture{log: &dlog.memLog}
	if f.srv, err = New(Options{Engine: e, DecisionLog: dlog,
		AuthZEN: &AuthZEN{TrustedPeers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}); err != nil {
		t.Fatal(err)
	}
	batch := `{"subject":{"type":"user","id":"alice"},"resource":{"type":"doc","id":"1"},"evaluations":[` +
		`{"action":{"name":"allow-a"}},{"action":{"name":"allow-b"}},{"action":{"name":"allow-c"}}]}`
	for _, want := range []struct {
		decision bool
		revision string
	}{{true, "rev-1"}, {false, "rev-2"}} {
		w := f.do(t, azRequest{path: "/access/v1/evaluations", body: batch})
		var got struct {
			Evaluations []struct {
				Decision bool `json:"decision"`
			} `json:"evaluations"`
		}
		if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != http.StatusOK || err != nil || len(got.Evaluations) != 3 {
			t.Fatalf("batch: %d %s", w.Code, w.Body)
		}
		for i, ev := range got.Evaluations {
			if ev.Decision != want.decision {
				t.Errorf("item %d: decision %v, want %v (all by %s)", i, ev.Decision, want.decision, want.revision)
			}
		}
		recs := dlog.records()
		for _, r := range recs[len(recs)-3:] {
			if r.Revision != want.revision {
				t.Errorf("item %s decided by %q, want %s", r.DecisionID, r.Revision, want.revision)
			}
		}
	}
	if dlog.err != nil {
		t.Fatalf("reload: %v", dlog.err)
	}
}

// slowEngine takes delay over every decision, or until its context ends,
// and counts them.
type slowEngine struct {
	Engine
	delay   time.Duration
	decided atomic.Int64
}

func (e *slowEngine) Decide(ctx context.Context, req authz.Request) (authz.Decision, error) {
	e.decided.Add(1)
	select {
	case <-time.After(e.delay):
	case <-ctx.Done():
	}
	return e.Engine.Decide(ctx, req)
}

// TestAuthZENBatchBoundedInTime: a batch whose evaluations add up to more
// than limits.write_timeout stops there, answered as a policy error,
// instead of evaluating every item after the client can no longer be
// answered.
func TestAuthZENBatchBoundedInTime(t *testing.T) {
	e := newEchoEngine(t, true)
	var err error
	slow := &slowEngine{Engine: e, delay: 50 * time.Millisecond}
	f := &azFixture{log: &memLog{}}
	if f.srv, err = New(Options{Engine: slow, DecisionLog: f.log, Limits: Limits{WriteTimeout: 200 * time.Millisecond},
		AuthZEN: &AuthZEN{TrustedPeers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}}); err != nil {
		t.Fatal(err)
	}
	batch := `{"subject":{"type":"user","id":"alice"},"resource":{"type":"doc","id":"1"},"action":{"name":"allow"},"evaluations":[` +
		strings.TrimSuffix(strings.Repeat(`{},`, 100), ",") + `]}`
	w := f.do(t, azRequest{path: "/access/v1/evaluations", body: batch})
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), CodePolicyError) ||
		!strings.Contains(w.Body.String(), "limits.write_timeout") {
		t.Errorf("batch past write_timeout: %d %s", w.Code, w.Body)
	}
	if n := slow.decided.Load(); n > 10 {
		t.Errorf("%d of 100 items decided, want the batch stopped at about 200ms/50ms", n)
	}
}

// TestAuthZENSeriesFromTheStart: a server that serves AuthZEN has its
// decision series from the start, at 0, as for every interface it serves.
func TestAuthZENSeriesFromTheStart(t *testing.T) {
	f := newAZFixture(t, true, nil)
	wantMetrics(t, scrape(t, f.srv),
		`verdict_decisions_total{api="authzen",result="allow"} 0`,
		`verdict_decisions_total{api="authzen",result="error"} 0`,
		`verdict_decision_duration_seconds_count{api="authzen"} 0`)
}

// TestAuthZENBatchAnswerBounded: a policy whose reasons quote the request
// (echoPolicy) made a 64 KiB batch of 100 items with a 63 KB action name a
// 6.5 MB answer, built in memory and held until the client read it. The
// answer is bounded: past maxBatchAnswerBytes the request is a policy
// error, whose body is small.
func TestAuthZENBatchAnswerBounded(t *testing.T) {
	f := newAZFixture(t, true, nil)
	items := strings.TrimSuffix(strings.Repeat("{},", DefaultMaxEvaluations), ",")
	head := `{"subject":{"type":"user","id":"u"},"resource":{"type":"r","id":"1"},"evaluations":[` + items + `],"action":{"name":"`
	body := head + strings.Repeat("a", DefaultMaxBodyBytes-len(head)-4) + `"}}`
	w := f.do(t, azRequest{path: "/access/v1/evaluations", body: body})
	if w.Code != http.StatusInternalServerError || !strings.Contains(w.Body.String(), "answer ran past") || w.Body.Len() > 4096 {
		t.Errorf("status %d, %d bytes: %.300s; want a small 500 saying the answer ran past its bound", w.Code, w.Body.Len(), w.Body)
	}
	w = f.do(t, azRequest{path: "/access/v1/evaluations", body: head + `allow_read"}}`})
	var got struct{ Evaluations []map[string]any }
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != http.StatusOK || err != nil || len(got.Evaluations) != DefaultMaxEvaluations {
		t.Errorf("a batch of ordinary answers: status %d, %d evaluations, %v", w.Code, len(got.Evaluations), err)
	}
}

// TestAuthZENBatchItemRefused: an item holding a value the engine refuses
// (1e400, which no float64 holds) is that item's error, answered with the
// items decided before it, as its decision log records them; it was a
// 400 for the whole batch, whose earlier items had been decided and logged
// allowed all the same.
func TestAuthZENBatchItemRefused(t *testing.T) {
	f := newAZFixture(t, true, nil)
	w := f.do(t, azRequest{path: "/access/v1/evaluations", body: `{
		"subject": {"type": "user", "id": "alice"}, "action": {"name": "allow_delete"},
		"evaluations": [
			{"resource": {"type": "doc", "id": "1"}},
			{"resource": {"type": "doc", "id": "2", "properties": {"n": 1e400}}},
			{"resource": {"type": "doc", "id": "3"}}]}`})
	var got struct {
		Evaluations []struct {
			Decision bool
			Context  struct{ Error *struct{ Status int } }
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); w.Code != http.StatusOK || err != nil || len(got.Evaluations) != 3 {
		t.Fatalf("status %d: %s (%v); want 200 with three evaluations", w.Code, w.Body, err)
	}
	if e := got.Evaluations; !e[0].Decision || e[1].Decision || e[1].Context.Error == nil || e[1].Context.Error.Status != http.StatusBadRequest || !e[2].Decision {
		t.Errorf("evaluations %+v, want allow, a 400 item error, allow", e)
	}
	if recs := f.log.records(); len(recs) != 3 || !recs[0].Allow || recs[1].Error != CodeInvalidRequest || !recs[2].Allow {
		t.Errorf("decision log %+v, want the three items as answered", recs)
	}
}

// TestAuthZENBatchDeadlineFromHeaders: a batch gets limits.write_timeout
// from when its headers were read, as the connection's write deadline
// does, not from when its body arrived: a client sending its body late
// cannot have decisions made under a slot for an answer that could no
// longer be written.
func TestAuthZENBatchDeadlineFromHeaders(t *testing.T) {
	log := &memLog{}
	srv, err := New(Options{Engine: newEchoEngine(t, true), DecisionLog: log, Addr: "127.0.0.1:0",
		Limits:  Limits{WriteTimeout: time.Second, ReadTimeout: 10 * time.Second},
		AuthZEN: &AuthZEN{TrustedPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, srv.Run)
	defer stop()
	body := `{"subject": {"type": "user", "id": "alice"}, "action": {"name": "allow_read"},
		"resource": {"type": "doc", "id": "1"}, "evaluations": [{}, {}]}`
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /access/v1/evaluations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", len(body))
	time.Sleep(1500 * time.Millisecond) // past write_timeout, well within read_timeout
	io.WriteString(c, body)
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.ReadAll(c)
	if n := len(log.records()); n != 0 {
		t.Errorf("%d decisions made for a batch whose answer could no longer be written", n)
	}
}
