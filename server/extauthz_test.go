package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// extAuthzFixture is a fixture whose server also serves ext_authz on
// loopback, with a client connection to it.
type extAuthzFixture struct {
	*fixture
	conn   *grpc.ClientConn
	client authv3.AuthorizationClient
	health healthpb.HealthClient
	addr   string // the gRPC address
	stop   func() error
}

type extAuthzOptions struct {
	trusted []string // ext_authz trusted peers
	noLoad  bool
	mutate  func(*Options)
	grace   time.Duration // the server's wait for cut-off handlers; 0: handlerGrace
	watches time.Duration // a health Watch's lifetime; 0: watchLifetime
}

func newExtAuthzFixture(t *testing.T, o extAuthzOptions) *extAuthzFixture {
	t.Helper()
	f := newFixture(t, fixtureOptions{noLoad: o.noLoad, mutate: func(opts *Options) {
		opts.ExtAuthz.Addr = "127.0.0.1:0"
		for _, p := range o.trusted {
			opts.ExtAuthz.TrustedPeers = append(opts.ExtAuthz.TrustedPeers, netip.MustParsePrefix(p))
		}
		if o.mutate != nil {
			o.mutate(opts)
		}
	}})
	if o.grace != 0 {
		f.srv.grace = o.grace
	}
	if o.watches != 0 {
		f.srv.watchLifetime = o.watches
	}
	_, stop := start(t, f.srv)
	x := &extAuthzFixture{fixture: f, addr: f.srv.ExtAuthzAddr().String(), stop: stop}
	x.conn = dialExtAuthz(t, x.addr, insecure.NewCredentials())
	x.client = authv3.NewAuthorizationClient(x.conn)
	x.health = healthpb.NewHealthClient(x.conn)
	return x
}

func dialExtAuthz(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// check asks req over the fixture's gRPC connection and reads the answer;
// a failed call fails t.
func (x *extAuthzFixture) check(t *testing.T, req *authv3.CheckRequest) extAnswer {
	t.Helper()
	resp, err := x.client.Check(t.Context(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return readAnswer(t, resp)
}

// checkRequest is the CheckRequest Envoy sends for method and path, with
// headers as Envoy's map (lowercase names).
func checkRequest(method, path string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "req-1", Method: method, Path: path, Host: "shop.example", Scheme: "https",
			Protocol: "HTTP/1.1", Headers: headers,
		}},
	}}
}

// extAnswer is a CheckResponse read back: its status, HTTP status, headers
// and JSON body.
type extAnswer struct {
	code    codes.Code
	http    int // 200 for an OK response
	headers map[string]string
	body    map[string]any
}

func readAnswer(t testing.TB, resp *authv3.CheckResponse) extAnswer {
	t.Helper()
	a := extAnswer{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}}
	var hs []*corev3.HeaderValueOption
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.http, hs = 200, r.OkResponse.GetHeaders()
		removesOthers := slices.ContainsFunc(r.OkResponse.GetHeadersToRemove(), func(h string) bool { return !isVerdictHeader(h) })
		if removesOthers || len(r.OkResponse.GetResponseHeadersToAdd()) > 0 {
			t.Errorf("OK response changes more than request headers: %v", r.OkResponse)
		}
	case *authv3.CheckResponse_DeniedResponse:
		a.http, hs = int(r.DeniedResponse.GetStatus().GetCode()), r.DeniedResponse.GetHeaders()
		if err := json.Unmarshal([]byte(r.DeniedResponse.GetBody()), &a.body); err != nil {
			t.Errorf("denied body is not JSON: %v: %q", err, r.DeniedResponse.GetBody())
		}
	default:
		t.Errorf("http_response is %T", r) // Errorf: readAnswer runs on other goroutines too
		return a
	}
	for _, h := range hs {
		// The deprecated append flag, which would take precedence, is unset.
		m := h.ProtoReflect()
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || m.Has(m.Descriptor().Fields().ByName("append")) {
			t.Errorf("header %s does not overwrite: %v", h.GetHeader().GetKey(), h)
		}
		if _, dup := a.headers[h.GetHeader().GetKey()]; dup {
			t.Errorf("header %s answered twice", h.GetHeader().GetKey())
		}
		a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if a.headers[headerDecisionID] == "" {
		t.Errorf("no %s header: %v", headerDecisionID, resp)
	}
	if a.body != nil && a.body["decision_id"] != a.headers[headerDecisionID] {
		t.Errorf("body decision_id %v, header %s", a.body["decision_id"], a.headers[headerDecisionID])
	}
	if (a.code == codes.OK) != (a.http == 200) {
		t.Errorf("status %v with HTTP %d", a.code, a.http)
	}
	return a
}

// reasons returns the body's reasons, or its error message.
func (a extAnswer) reasons() string {
	if e, ok := a.body["error"].(map[string]any); ok {
		return fmt.Sprint(e["code"], ": ", e["message"])
	}
	return fmt.Sprint(a.body["reasons"])
}

func TestExtAuthzCheck(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	viewer := "Bearer " + x.mint(t, "alice", "viewer")
	bad := viewer[:len(viewer)-4] + "AAAA"
	tests := []struct {
		name       string
		req        *authv3.CheckRequest
		wantCode   codes.Code
		wantHTTP   int
		wantReason string            // in the reasons (or the error message)
		wantHeader map[string]string // a subset of the answer's headers
	}{
		{name: "allow with the policy's headers", req: checkRequest("GET", "/orders/42?page=2", map[string]string{"authorization": viewer}),
			wantCode: codes.OK, wantHTTP: 200,
			wantHeader: map[string]string{"x-verdict-action": "orders:read", "x-verdict-subject": "alice", "x-verdict-roles": "viewer", "x-verdict-caller": ""}},
		{name: "deny is 403", req: checkRequest("DELETE", "/orders/42", map[string]string{"authorization": viewer}),
			wantCode: codes.PermissionDenied, wantHTTP: 403, wantReason: "no role grants orders:delete",
			wantHeader: map[string]string{"content-type": "application/json"}},
		{name: "anonymous public allow", req: checkRequest("GET", "/catalog/items", nil),
			wantCode: codes.OK, wantHTTP: 200, wantHeader: map[string]string{"x-verdict-action": "catalog:read", "x-verdict-subject": ""}},
		{name: "anonymous deny is 401", req: checkRequest("GET", "/orders/42", map[string]string{"x-forwarded-proto": "https"}),
			wantCode: codes.PermissionDenied, wantHTTP: 401, wantReason: "anonymous access to orders:read is not allowed",
			wantHeader: map[string]string{"www-authenticate": "Bearer"}},
		{name: "bad token is 401 even on a public path", req: checkRequest("GET", "/catalog/items", map[string]string{"authorization": bad}),
			wantCode: codes.PermissionDenied, wantHTTP: 401, wantReason: "token: bad_signature",
			wantHeader: map[string]string{"www-authenticate": `Bearer error="invalid_token"`}},
		{name: "malformed authorization is a token refusal, not anonymous", req: checkRequest("GET", "/catalog/items", map[string]string{"authorization": "Basic YWxpY2U6cHc="}),
			wantCode: codes.PermissionDenied, wantHTTP: 401, wantReason: "token: malformed"},
		{name: "two authorization headers joined by Envoy are malformed", req: checkRequest("GET", "/catalog/items", map[string]string{"authorization": viewer + "," + viewer}),
			wantCode: codes.PermissionDenied, wantHTTP: 401, wantReason: "token: malformed"},
		{name: "the action header names the action", req: checkRequest("GET", "/orders/42", map[string]string{"authorization": viewer, "x-verdict-action": "orders:delete"}),
			wantCode: codes.PermissionDenied, wantHTTP: 403, wantReason: "no role grants orders:delete"},
		{name: "forward-auth headers are not read", req: checkRequest("GET", "/catalog", map[string]string{"x-forwarded-method": "DELETE", "x-forwarded-uri": "/orders/42"}),
			wantCode: codes.OK, wantHTTP: 200},
		{name: "a method override is refused", req: checkRequest("POST", "/orders", map[string]string{"authorization": viewer, "x-http-method-override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X-Http-Method-Override is refused"},
		{name: "x-method-override too", req: checkRequest("GET", "/catalog", map[string]string{"x-method-override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "X-Method-Override"},
		{name: "a method override written with '_' too", req: checkRequest("POST", "/orders", map[string]string{"authorization": viewer, "x_http_method_override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "is refused: an upstream that honours it"},
		{name: "a method override with '-' and '_' mixed (a CGI-style upstream reads it too)", req: checkRequest("POST", "/orders/42", map[string]string{"authorization": viewer, "x-http_method-override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X-Http_method-Override is refused"},
		{name: "a path override with '-' and '_' mixed", req: checkRequest("GET", "/catalog", map[string]string{"x-original_url": "/orders/42"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X-Original_url is refused"},
		{name: "a method override written with '.' (PHP reads it as '_')", req: checkRequest("POST", "/orders/42", map[string]string{"authorization": viewer, "x.http.method.override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X.http.method.override is refused"},
		{name: "a path override with another separator", req: checkRequest("GET", "/catalog", map[string]string{"x-original~url": "/orders/42"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X-Original~url is refused"},
		{name: "header names in any case", req: checkRequest("POST", "/orders/42", map[string]string{"authorization": viewer, "X-HTTP-Method-Override": "DELETE"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X-Http-Method-Override is refused"},
		{name: "a path override is refused", req: checkRequest("GET", "/catalog", map[string]string{"authorization": viewer, "x-original-url": "/orders/42"}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "X-Original-Url is refused"},
		{name: "a _method query parameter is refused", req: checkRequest("POST", "/orders/42?_method=DELETE", map[string]string{"authorization": viewer}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "a _method query parameter is refused"},
		{name: "dot segments are refused", req: checkRequest("GET", "/catalog/../orders/42", map[string]string{"authorization": viewer}),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "dot segments ('.', '..') are refused"},
		{name: "encoded dot segments too", req: checkRequest("GET", "/catalog/%2e%2e/orders", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "encoded dot segment"},
		{name: "';' is refused", req: checkRequest("GET", "/catalog/..;/orders/42", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "';'"},
		{name: "path parameters are refused", req: checkRequest("GET", "/orders;jsessionid=1", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "';'"},
		{name: "encoded '/' is refused", req: checkRequest("GET", "/catalog%2F..%2Forders", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "encoded '/'"},
		{name: "the query is not part of the path", req: checkRequest("GET", "/catalog?next=/../orders;x", nil),
			wantCode: codes.OK, wantHTTP: 200, wantHeader: map[string]string{"x-verdict-action": "catalog:read"}},
		{name: "no http attributes", req: &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}},
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "attributes.request.http is required"},
		{name: "no attributes at all", req: &authv3.CheckRequest{},
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "attributes.request.http is required"},
		{name: "no path", req: checkRequest("GET", "", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "must carry a method and a path"},
		{name: "no method", req: checkRequest("", "/catalog", nil),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "must carry a method and a path"},
		{name: "raw headers: a repeated authorization is malformed", req: rawHeaders(checkRequest("GET", "/catalog", nil),
			"authorization", viewer, "authorization", viewer),
			wantCode: codes.PermissionDenied, wantHTTP: 401, wantReason: "token: malformed"},
		{name: "raw headers: allow", req: rawHeaders(checkRequest("GET", "/orders/1", nil), "Authorization", viewer, "x-other", "1"),
			wantCode: codes.OK, wantHTTP: 200, wantHeader: map[string]string{"x-verdict-subject": "alice"}},
		{name: "raw headers: a repeated action header is refused", req: rawHeaders(checkRequest("GET", "/orders/1", nil),
			"x-verdict-action", "orders:read", "x-verdict-action", "orders:delete"),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "X-Verdict-Action appears more than once"},
		{name: "raw headers: a method override is refused", req: rawHeaders(checkRequest("GET", "/catalog", nil), "X-HTTP-Method", "DELETE"),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "X-Http-Method is refused"},
		{name: "raw headers: a mixed override is refused", req: rawHeaders(checkRequest("POST", "/orders/42", nil), "authorization", viewer, "x_http-method_override", "DELETE"),
			wantCode: codes.InvalidArgument, wantHTTP: 400, wantReason: "header X_http-Method_override is refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := x.check(t, tc.req)
			if a.code != tc.wantCode || a.http != tc.wantHTTP {
				t.Fatalf("answer %v/%d, want %v/%d: %s", a.code, a.http, tc.wantCode, tc.wantHTTP, a.reasons())
			}
			if tc.wantReason != "" && !strings.Contains(a.reasons(), tc.wantReason) {
				t.Errorf("reasons %s, want %q", a.reasons(), tc.wantReason)
			}
			for k, v := range tc.wantHeader {
				if got, ok := a.headers[k]; !ok || got != v {
					t.Errorf("header %s = %q (present %v), want %q", k, got, ok, v)
				}
			}
			if a.http == 401 && a.headers["www-authenticate"] == "" {
				t.Error("401 without www-authenticate")
			}
			if a.http != 401 && a.headers["www-authenticate"] != "" {
				t.Errorf("%d with www-authenticate", a.http)
			}
			if a.http == 400 && a.body["allow"] != false {
				t.Errorf("400 body %v", a.body)
			}
		})
	}
}

// TestExtAuthzPutHeadersDropsClientSpellings: a pooled header map keeps
// the names the front reads as Verdict spells them, never a client's
// spelling of an override header, of which there are tens of thousands:
// kept, a pooled map gathered every one clients sent, and every Check
// walked them all.
func TestExtAuthzPutHeadersDropsClientSpellings(t *testing.T) {
	x := &extAuthz{}
	h := http.Header{}
	for _, name := range []string{"authorization", "x-request-id", "x-http-method-override",
		"x.http.method.override", "x_http_method_override", "x-original~url"} {
		if k := extAuthzHeaders("").key(name); k != "" {
			h[k] = append(h[k], "v")
		}
	}
	x.putHeaders(h)
	var kept []string
	for k, v := range h {
		if len(v) != 0 {
			t.Errorf("%s kept its values %q", k, v)
		}
		kept = append(kept, k)
	}
	slices.Sort(kept)
	if want := []string{"Authorization", "X-Http-Method-Override", "X-Request-Id"}; !slices.Equal(kept, want) {
		t.Errorf("kept %q, want %q", kept, want)
	}
}

// rawHeaders moves req's headers to the list Envoy sends with
// encode_raw_headers, adding kv pairs (which may repeat a name).
func rawHeaders(req *authv3.CheckRequest, kv ...string) *authv3.CheckRequest {
	h := req.Attributes.Request.Http
	hm := &corev3.HeaderMap{}
	for k, v := range h.Headers {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: k, RawValue: []byte(v)})
	}
	for i := 0; i+1 < len(kv); i += 2 {
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{Key: kv[i], RawValue: []byte(kv[i+1])})
	}
	h.Headers, h.HeaderMap = nil, hm
	return req
}

// TestExtAuthzRemovesClientVerdictHeaders: an upstream reads x-verdict-*
// as the policy's word, and ext_authz only overwrites the headers the
// policy sets. The client's own x-verdict-* headers that the answer does not
// set are now removed (headers_to_remove), also those written with '_';
// those it sets are overwritten.
func TestExtAuthzRemovesClientVerdictHeaders(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	viewer := "Bearer " + x.mint(t, "alice", "viewer")
	req := checkRequest("GET", "/orders/42", map[string]string{"authorization": viewer,
		"x-verdict-roles": "admin", "x-verdict-tenant": "other", "x-verdict-decision-id": "forged", "x-request-id": "r",
		"x_verdict_roles": "admin", "x-verdict_subject": "root"})
	resp, err := x.client.Check(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	ok := resp.GetOkResponse()
	if ok == nil {
		t.Fatalf("not allowed: %v", resp)
	}
	// x_verdict_roles and x-verdict_subject are x-verdict-roles and
	// x-verdict-subject to a CGI-style upstream: removed though the answer
	// sets those, since Envoy removes and sets by exact name.
	want := []string{"x-verdict-tenant", "x-verdict_subject", "x_verdict_roles"}
	if got := ok.GetHeadersToRemove(); !slices.Equal(got, want) {
		t.Errorf("headers to remove %q, want %q (the others are set by the answer)", got, want)
	}
	if a := readAnswer(t, resp); a.headers["x-verdict-roles"] != "viewer" || a.headers["x-verdict-decision-id"] == "forged" {
		t.Errorf("answer headers %v, want the policy's roles and a decision id of Verdict's", a.headers)
	}
}

// TestClientVerdictHeaders: the client's x-verdict-* headers are named
// once each, lowercase and sorted, however often and in whatever case the
// client repeats them, and also when written with '_', '.' or another
// separator for any '-' (a CGI-style upstream reads x_verdict_roles as
// x-verdict-roles, PHP x.verdict.roles too), in the
// client's spelling (Envoy removes by exact name); the ones the answer
// sets are not named, but another spelling of one is, whatever its name.
func TestClientVerdictHeaders(t *testing.T) {
	set := []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "X-Verdict-Set", Value: "v"}}}
	tests := []struct {
		name string
		kv   []string
		want []string
	}{
		{name: "each once, lowercase",
			kv:   []string{"X-Verdict-B", "1", "x-verdict-a", "1", "x-verdict-b", "2", "X-VERDICT-A", "3", "x-other", "1", "x-verdict-set", "1"},
			want: []string{"x-verdict-a", "x-verdict-b"}},
		{name: "underscores",
			kv:   []string{"x-verdict-roles", "admin", "x_verdict_roles", "admin", "X_Verdict_Tenant", "other"},
			want: []string{"x-verdict-roles", "x_verdict_roles", "x_verdict_tenant"}},
		{name: "mixed", kv: []string{"x-verdict_roles", "admin", "X_verdict-Tenant", "other", "x_VERDICT_", "1"},
			want: []string{"x-verdict_roles", "x_verdict-tenant", "x_verdict_"}},
		{name: "a spelling of a header the answer sets", kv: []string{"x_verdict_set", "1", "X-Verdict-Set", "2"},
			want: []string{"x_verdict_set"}},
		// PHP reads '.' as '_' ($_SERVER['HTTP_X_VERDICT_ROLES']), lighttpd
		// writes every byte but a letter or digit as '_'.
		{name: "other separators", kv: []string{"x.verdict.roles", "admin", "X-Verdict.Roles", "admin", "x~verdict+tenant", "other"},
			want: []string{"x-verdict.roles", "x.verdict.roles", "x~verdict+tenant"}},
		{name: "not verdict's", kv: []string{"x-verdict", "1", "x_verdicts_roles", "1", "xx-verdict-roles", "1", "x.verdicts.roles", "1"}},
		// A policy's header of another name: a CGI-style upstream reads
		// x_user_id as the x-user-id the answer sets.
		{name: "another spelling of a policy's header", kv: []string{"x_user_id", "root", "X.User.Id", "root", "x-user-id", "1", "x-user-ids", "1", "x-user", "1"},
			want: []string{"x.user.id", "x_user_id"}},
	}
	set = append(set, &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-user-id", Value: "alice"}})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hr := rawHeaders(checkRequest("GET", "/", nil), tc.kv...).Attributes.Request.Http
			if diff := cmp.Diff(tc.want, clientVerdictHeaders(hr, set), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("headers to remove (-want +got):\n%s", diff)
			}
		})
	}
}

// BenchmarkClientVerdictHeaders: any gRPC client that reaches the port may
// send thousands of x-verdict-* names; the time an op grows with n log n
// (it grew with n²: 380 ms for 10,000 names, 4.4 ms now; BENCHMARKS.md).
func BenchmarkClientVerdictHeaders(b *testing.B) {
	for _, n := range []int{100, 10_000} {
		b.Run(fmt.Sprint("names=", n), func(b *testing.B) {
			h := make(map[string]string, n)
			for i := range n {
				h[fmt.Sprintf("x-verdict-%d", i)] = ""
			}
			hr := checkRequest("GET", "/", h).Attributes.Request.Http
			for b.Loop() {
				if got := clientVerdictHeaders(hr, nil); len(got) != n {
					b.Fatalf("%d names, want %d", len(got), n)
				}
			}
		})
	}
}

// TestExtAuthzRecorded checks that ext_authz decisions go through the
// shared pipeline: the decision log and the metrics, under api ext_authz.
func TestExtAuthzRecorded(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	for _, req := range []*authv3.CheckRequest{
		checkRequest("GET", "/catalog?q=secret", nil),
		checkRequest("GET", "/orders/1", map[string]string{"authorization": "Bearer x.y.z"}),
		checkRequest("GET", "/a/../b", nil),
	} {
		if _, err := x.client.Check(t.Context(), req); err != nil {
			t.Fatal(err)
		}
	}
	recs := x.log.records()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	type rec struct {
		API, Method, Path, Error string
		Allow                    bool
	}
	var got []rec
	for _, r := range recs {
		got = append(got, rec{API: r.API, Method: r.Action.Method, Path: r.Action.Path, Error: r.Error, Allow: r.Allow})
	}
	want := []rec{
		{API: "ext_authz", Method: "GET", Path: "/catalog", Allow: true},
		{API: "ext_authz", Method: "GET", Path: "/orders/1"},
		{API: "ext_authz", Method: "GET", Path: "/a/../b", Error: CodeInvalidRequest},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	wantMetrics(t, scrape(t, x.srv),
		`verdict_decisions_total{api="ext_authz",result="allow"} 1`,
		`verdict_decisions_total{api="ext_authz",result="deny"} 1`,
		`verdict_decisions_total{api="ext_authz",result="error"} 1`,
		`verdict_token_failures_total{reason="malformed"} 1`,
	)
}

// attributesPolicy allows when the request's attributes reach the input
// document as documented, and echoes what it saw as headers.
const attributesPolicy = `package authz

default allow := false

allow if {
	input.action.path == "/x/y"
	input.action.method == "POST"
	input.context.attributes.query == "a=1&b=%2F"
	input.context.attributes.host == "shop.example"
	input.context.attributes.context_extensions.tenant == "acme"
}

headers := {
	"x-caller": object.get(input.caller, "id", ""),
	"x-caller-method": object.get(input.caller, "method", ""),
	"x-remote-addr": object.get(input.context, "remote_addr", ""),
	"x-request-id": input.context.request_id,
} if allow
`

// TestExtAuthzPeerTrust checks that source.principal (the caller) and
// source.address (the client address) are believed only from a trusted
// peer, and that the query, host and context_extensions reach
// input.context.attributes.
func TestExtAuthzPeerTrust(t *testing.T) {
	req := func() *authv3.CheckRequest {
		r := checkRequest("POST", "/x/y?a=1&b=%2F", map[string]string{"x-request-id": "abc-123"})
		r.Attributes.ContextExtensions = map[string]string{"tenant": "acme"}
		r.Attributes.Source = &authv3.AttributeContext_Peer{
			Principal: "spiffe://verdict.example/ns/shop/sa/payments",
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "::ffff:203.0.113.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50123}}}},
		}
		return r
	}
	tests := []struct {
		name    string
		trusted []string
		want    map[string]string
	}{
		{name: "trusted peer", trusted: []string{"127.0.0.0/8"}, want: map[string]string{
			"x-caller": "spiffe://verdict.example/ns/shop/sa/payments", "x-caller-method": "mesh",
			"x-remote-addr": "203.0.113.7", "x-request-id": "abc-123"}},
		{name: "untrusted peer", trusted: []string{"192.0.2.0/24"}, want: map[string]string{
			"x-caller": "", "x-caller-method": "none", "x-remote-addr": "", "x-request-id": "abc-123"}},
		{name: "no trusted peers", want: map[string]string{
			"x-caller": "", "x-caller-method": "none", "x-remote-addr": "", "x-request-id": "abc-123"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := newExtAuthzFixture(t, extAuthzOptions{trusted: tc.trusted, noLoad: true})
			if err := x.engine.Load(t.Context(), authztest.Policy(t, "attrs", attributesPolicy)); err != nil {
				t.Fatal(err)
			}
			a := x.check(t, req())
			if a.code != codes.OK {
				t.Fatalf("answer %v %d %s", a.code, a.http, a.reasons())
			}
			delete(a.headers, headerDecisionID)
			if diff := cmp.Diff(tc.want, a.headers); diff != "" {
				t.Errorf("headers (-want +got):\n%s", diff)
			}
		})
	}

	// The default policy's service allowlist: only payments may reserve
	// inventory, and only a trusted peer's principal says who is calling.
	for _, tc := range []struct {
		name     string
		trusted  []string
		wantCode codes.Code
		want     string
	}{
		{name: "trusted principal", trusted: []string{"127.0.0.1/32"}, wantCode: codes.OK, want: "service payments may call inventory:reserve"},
		{name: "untrusted principal", trusted: []string{"10.0.0.0/8"}, wantCode: codes.PermissionDenied,
			want: "only payments may call inventory:reserve, and the caller is not authenticated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExtAuthzFixture(t, extAuthzOptions{trusted: tc.trusted})
			r := checkRequest("POST", "/inventory/reserve", map[string]string{
				"authorization": "Bearer " + x.mint(t, "alice", "viewer"), "x-verdict-action": "inventory:reserve"})
			r.Attributes.Source = &authv3.AttributeContext_Peer{Principal: "spiffe://verdict.example/ns/shop/sa/payments"}
			a := x.check(t, r)
			if a.code != tc.wantCode {
				t.Fatalf("answer %v %d %s", a.code, a.http, a.reasons())
			}
			if a.code != codes.OK && !strings.Contains(a.reasons(), tc.want) {
				t.Errorf("reasons %s, want %q", a.reasons(), tc.want)
			}
			if a.code == codes.OK && a.headers["x-verdict-caller"] != "spiffe://verdict.example/ns/shop/sa/payments" {
				t.Errorf("x-verdict-caller = %q", a.headers["x-verdict-caller"])
			}
			recs := x.log.records()
			if wantCaller := map[bool]string{true: "spiffe://verdict.example/ns/shop/sa/payments"}[tc.wantCode == codes.OK]; recs[len(recs)-1].CallerID != wantCaller {
				t.Errorf("logged caller %q, want %q", recs[len(recs)-1].CallerID, wantCaller)
			}
		})
	}
}

// TestExtAuthzFailsClosed checks the error answers: never OK, always a
// denied response that Envoy sends whatever failure_mode_allow says.
func TestExtAuthzFailsClosed(t *testing.T) {
	t.Run("no policy", func(t *testing.T) {
		x := newExtAuthzFixture(t, extAuthzOptions{noLoad: true})
		a := x.check(t, checkRequest("GET", "/catalog", nil))
		if a.code != codes.Unavailable || a.http != 503 || !strings.Contains(a.reasons(), CodeNotReady) {
			t.Errorf("answer %v %d %v", a.code, a.http, a.body)
		}
	})
	t.Run("evaluation error", func(t *testing.T) {
		x := newExtAuthzFixture(t, extAuthzOptions{noLoad: true})
		// reasons break the contract at evaluation (a number the type
		// checker cannot know about).
		policy := "package authz\n\nallow := true\n\nreasons := object.get(input.resource, \"r\", [1])\n"
		if err := x.engine.Load(t.Context(), authztest.Policy(t, "broken", policy)); err != nil {
			t.Fatal(err)
		}
		a := x.check(t, checkRequest("GET", "/catalog", nil))
		if a.code != codes.Internal || a.http != 500 || !strings.Contains(a.reasons(), CodePolicyError) {
			t.Errorf("answer %v %d %v", a.code, a.http, a.body)
		}
	})
	t.Run("panic", func(t *testing.T) {
		x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Engine = panicEngine{o.Engine} }})
		a := x.check(t, checkRequest("GET", "/catalog", nil))
		if a.code != codes.Internal || a.http != 500 {
			t.Errorf("answer %v %d %v", a.code, a.http, a.body)
		}
		// The server still answers.
		if _, err := x.health.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil {
			t.Errorf("after a panic: %v", err)
		}
	})
}

type panicEngine struct{ Engine }

func (panicEngine) Decide(context.Context, authz.Request) (authz.Decision, error) { panic("boom") }

// TestExtAuthzConcurrent sends many Checks at once through one connection,
// mixing every kind of answer, and checks each answer is its own.
func TestExtAuthzConcurrent(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{trusted: []string{"127.0.0.1/32"}})
	type call struct {
		req      func(i int) *authv3.CheckRequest
		wantCode codes.Code
		wantHTTP int
		check    func(a extAnswer, i int) string
	}
	tokens := make([]string, 8)
	for i := range tokens {
		tokens[i] = x.mint(t, fmt.Sprintf("user-%d", i), "viewer")
	}
	calls := []call{
		{req: func(i int) *authv3.CheckRequest {
			return checkRequest("GET", fmt.Sprintf("/orders/%d", i), map[string]string{"authorization": "Bearer " + tokens[i%len(tokens)]})
		}, wantCode: codes.OK, wantHTTP: 200, check: func(a extAnswer, i int) string {
			if want := fmt.Sprintf("user-%d", i%len(tokens)); a.headers["x-verdict-subject"] != want {
				return fmt.Sprintf("subject %q, want %q", a.headers["x-verdict-subject"], want)
			}
			return ""
		}},
		{req: func(i int) *authv3.CheckRequest {
			r := checkRequest("POST", "/inventory", map[string]string{"x-verdict-action": "inventory:reserve"})
			r.Attributes.Source = &authv3.AttributeContext_Peer{Principal: "spiffe://verdict.example/ns/shop/sa/payments"}
			return r
		}, wantCode: codes.OK, wantHTTP: 200, check: func(a extAnswer, _ int) string {
			if a.headers["x-verdict-caller"] != "spiffe://verdict.example/ns/shop/sa/payments" {
				return "caller " + a.headers["x-verdict-caller"]
			}
			return ""
		}},
		{req: func(i int) *authv3.CheckRequest {
			return checkRequest("DELETE", "/orders/1", map[string]string{"authorization": "Bearer " + tokens[i%len(tokens)]})
		}, wantCode: codes.PermissionDenied, wantHTTP: 403},
		{req: func(int) *authv3.CheckRequest { return checkRequest("GET", "/orders/1", nil) }, wantCode: codes.PermissionDenied, wantHTTP: 401},
		{req: func(int) *authv3.CheckRequest {
			return checkRequest("GET", "/orders/1", map[string]string{"authorization": "Bearer a.b.c"})
		}, wantCode: codes.PermissionDenied, wantHTTP: 401},
		{req: func(i int) *authv3.CheckRequest { return checkRequest("GET", fmt.Sprintf("/x/%d/../y", i), nil) },
			wantCode: codes.InvalidArgument, wantHTTP: 400},
	}
	const workers, perWorker = 32, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers*perWorker)
	for w := range workers {
		wg.Go(func() {
			for n := range perWorker {
				i := w*perWorker + n
				c := calls[i%len(calls)]
				resp, err := x.client.Check(t.Context(), c.req(i))
				if err != nil {
					errs <- err
					continue
				}
				a := readAnswer(t, resp)
				if a.code != c.wantCode || a.http != c.wantHTTP {
					errs <- fmt.Errorf("call %d: %v/%d, want %v/%d (%s)", i, a.code, a.http, c.wantCode, c.wantHTTP, a.reasons())
					continue
				}
				if c.check != nil {
					if msg := c.check(a, i); msg != "" {
						errs <- fmt.Errorf("call %d: %s", i, msg)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(x.log.records()); n != workers*perWorker {
		t.Errorf("%d decisions logged, want %d", n, workers*perWorker)
	}
}

func TestExtAuthzHealth(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{noLoad: true})
	check := func(service string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := x.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("health %q: %v", service, err)
		}
		return resp.GetStatus()
	}
	watch, err := x.health.Watch(t.Context(), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("first watched status %v, %v; want NOT_SERVING", st, err)
	}
	for _, svc := range []string{"", ExtAuthzService} {
		if got := check(svc); got != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("before a policy, %q is %v", svc, got)
		}
	}
	if _, err := x.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: "other"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown service: %v, want NotFound", err)
	}

	if err := x.engine.Load(t.Context(), authztest.Policy(t, "r1", "package authz\n\nallow := true\n")); err != nil {
		t.Fatal(err)
	}
	for _, svc := range []string{"", ExtAuthzService} {
		if got := check(svc); got != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("with a policy, %q is %v", svc, got)
		}
	}
	// Watchers follow readiness (within the poll interval).
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watched status %v, %v; want SERVING", st, err)
	}

	// Shutdown ends the watch (it does not hold up the graceful stop).
	start := time.Now()
	if err := x.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %v with a watch open", d)
	}
	for {
		st, err := watch.Recv()
		if err != nil {
			break
		}
		if st.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("during shutdown: %v", st.GetStatus())
		}
	}
}

// TestExtAuthzShutdown checks that a Check in flight when Run's context
// ends is answered, that the gRPC listener closes, and that Run returns
// nil; and that a Check that outlasts the shutdown timeout is cut off.
func TestExtAuthzShutdown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		release bool // release the decision during shutdown
		gone    bool // the client resets its call (Envoy does at its deadline) before shutdown
	}{{name: "graceful", release: true}, {name: "timeout"}, {name: "client gone", gone: true}} {
		t.Run(tc.name, func(t *testing.T) {
			var gate *gateEngine
			x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
				gate = newGateEngine(o.Engine)
				gate.linger = 200 * time.Millisecond
				o.Engine = gate
				o.Limits.ShutdownTimeout = 300 * time.Millisecond
			}})
			t.Cleanup(func() {
				select {
				case <-gate.release:
				default:
					close(gate.release)
				}
			})
			type result struct {
				resp *authv3.CheckResponse
				err  error
			}
			got := make(chan result, 1)
			ctx, cancelCall := context.WithCancel(context.Background())
			defer cancelCall()
			go func() {
				resp, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil))
				got <- result{resp, err}
			}()
			<-gate.entered
			if tc.gone {
				// Shutdown does not wait for the reset call's handler, still
				// deciding (for gate.linger): Run must.
				cancelCall()
				<-got
				if err := x.stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				gate.wantReturned(t)
				return
			}
			stopped := make(chan error, 1)
			go func() { stopped <- x.stop() }()
			eventuallyClosed(t, x.addr)
			if tc.release {
				close(gate.release)
				r := <-got
				if r.err != nil || codes.Code(r.resp.GetStatus().GetCode()) != codes.OK {
					t.Fatalf("in-flight check: %v %v", r.resp, r.err)
				}
				if err := <-stopped; err != nil {
					t.Fatalf("Run: %v", err)
				}
				return
			}
			err := <-stopped
			if err == nil || !strings.Contains(err.Error(), "in-flight ext_authz calls did not finish") {
				t.Errorf("Run = %v, want in-flight calls cut off", err)
			}
			gate.wantReturned(t)
			if r := <-got; r.err == nil {
				t.Errorf("cut-off check answered %v", r.resp)
			}
		})
	}
}

// TestExtAuthzTLS checks that the gRPC listener uses the server's TLS
// configuration, client certificates included.
func TestExtAuthzTLS(t *testing.T) {
	ca := authztest.NewCA(t, "ext_authz test ca")
	serverCert := ca.Issue(t, authztest.LeafOptions{CommonName: "verdict", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	client := ca.Issue(t, authztest.LeafOptions{CommonName: "envoy", URIs: []string{"spiffe://verdict.example/envoy"}})
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		var err error
		if o.TLS, err = NewTLS("require"); err != nil {
			t.Fatal(err)
		}
		if err := o.TLS.Set(serverCert.TLS, ca.Pool()); err != nil {
			t.Fatal(err)
		}
	}})
	ok := dialExtAuthz(t, x.addr, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{client.TLS}}))
	resp, err := authv3.NewAuthorizationClient(ok).Check(t.Context(), checkRequest("GET", "/catalog", nil))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("mTLS check: %v %v", resp, err)
	}
	// The client CAs rotated (the server's certificate stays): the open
	// connection's certificate no longer verifies, and its checks are
	// denied (a CheckResponse, never a gRPC error: Envoy's
	// failure_mode_allow lets errors through).
	rotated := authztest.NewCA(t, "rotated ca")
	if err := x.fixture.srv.tls.Set(serverCert.TLS, rotated.Pool()); err != nil {
		t.Fatal(err)
	}
	resp, err = authv3.NewAuthorizationClient(ok).Check(t.Context(), checkRequest("GET", "/catalog", nil))
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied ||
		resp.GetDeniedResponse().GetStatus().GetCode() != 403 || !strings.Contains(resp.GetStatus().GetMessage(), "no longer verifies") {
		t.Fatalf("check on a connection whose CA was rotated out: %v %v, want a 403 deny", resp, err)
	}
	if err := x.fixture.srv.tls.Set(serverCert.TLS, ca.Pool()); err != nil {
		t.Fatal(err)
	}
	if _, err := authv3.NewAuthorizationClient(ok).Check(t.Context(), checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatalf("check once the CA is back: %v", err)
	}
	// Without a client certificate the handshake fails; in plain text the
	// server does not answer.
	for name, creds := range map[string]credentials.TransportCredentials{
		"no client certificate": credentials.NewTLS(&tls.Config{RootCAs: ca.Pool()}),
		"plain text":            insecure.NewCredentials(),
	} {
		conn := dialExtAuthz(t, x.addr, creds)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := authv3.NewAuthorizationClient(conn).Check(ctx, checkRequest("GET", "/catalog", nil))
		cancel()
		if err == nil {
			t.Errorf("%s: answered", name)
		}
	}
}

// TestExtAuthzLimits checks that a CheckRequest over the message limit is
// refused by gRPC before it is decoded.
func TestExtAuthzLimits(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.MaxHeaderBytes, o.Limits.MaxBodyBytes = 4<<10, 4<<10
	}})
	// Too large is a deny, not a gRPC error that failure_mode_allow would
	// let through.
	big := checkRequest("GET", "/catalog", map[string]string{"x-big": strings.Repeat("a", 9<<10)})
	if a := x.check(t, big); a.code != codes.ResourceExhausted || a.http != http.StatusRequestEntityTooLarge || !strings.HasPrefix(a.reasons(), CodeTooLarge+":") {
		t.Errorf("oversized request: %v %d %s, want RESOURCE_EXHAUSTED 413 too_large", a.code, a.http, a.reasons())
	}
	// A health check too large is refused with its status.
	_, err := x.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: strings.Repeat("a", 9<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized health check: %v, want ResourceExhausted", err)
	}
	if _, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", map[string]string{"x-small": "a"})); err != nil {
		t.Errorf("small request: %v", err)
	}
}

// TestExtAuthzDeadline checks that a Check without a deadline, or with a
// later one than limits.write_timeout, gets write_timeout's.
func TestExtAuthzDeadline(t *testing.T) {
	var seen time.Duration
	var mu sync.Mutex
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.WriteTimeout = 3 * time.Second
		o.Engine = deadlineEngine{Engine: o.Engine, seen: func(d time.Duration) { mu.Lock(); seen = d; mu.Unlock() }}
	}})
	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	for name, ctx := range map[string]context.Context{"none": context.Background(), "an hour": long} {
		if _, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil)); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		if seen <= 0 || seen > 3*time.Second {
			t.Errorf("client deadline %s: deadline in %v, want within 3s", name, seen)
		}
		mu.Unlock()
	}
}

type deadlineEngine struct {
	Engine
	seen func(time.Duration)
}

func (e deadlineEngine) Decide(ctx context.Context, req authz.Request) (authz.Decision, error) {
	if d, ok := ctx.Deadline(); ok {
		e.seen(time.Until(d))
	} else {
		e.seen(-1)
	}
	return e.Engine.Decide(ctx, req)
}

func TestExtAuthzOptions(t *testing.T) {
	_, err := New(Options{Engine: &stubEngine{}, ExtAuthz: ExtAuthzOptions{Addr: ":0", TrustedPeers: []netip.Prefix{{}}}})
	if !errors.Is(err, ErrOptions) {
		t.Errorf("invalid prefix: %v", err)
	}
	s, err := New(Options{Engine: &stubEngine{}, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	defer s.ln.Close()
	if s.ExtAuthzAddr() != nil {
		t.Errorf("ext_authz bound without an address: %v", s.ExtAuthzAddr())
	}
}

// FuzzExtAuthzCheck asks an allow-all policy with fuzzed method, path,
// authorization and method-override values. The answer is always a
// well-formed CheckResponse; it is never OK with an authorization header
// (no fuzzed string is a valid token) or a method-override header; and
// nothing panics (a recovered panic would answer INTERNAL).
func FuzzExtAuthzCheck(f *testing.F) {
	fx := newFixture(f, fixtureOptions{noLoad: true})
	if err := fx.engine.Load(f.Context(), authztest.Policy(f, "all", "package authz\n\nallow := true\n")); err != nil {
		f.Fatal(err)
	}
	fx.srv.dlog = nil
	svc := &extAuthz{s: fx.srv}
	for _, seed := range [][4]string{
		{"GET", "/orders/42?x=1", "", ""},
		{"POST", "/a/../b", "Bearer a.b.c", ""},
		{"GET", "/a;b", "Basic x", "DELETE"},
		{"", "", "Bearer", ""},
		{"get", "%2e%2e/%2F", "bearer  x y", "x"},
		{"GET", "/\u2025/x", "Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln", ""},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], false)
	}
	f.Fuzz(func(t *testing.T, method, path, auth, override string, raw bool) {
		h := map[string]string{"x-request-id": path}
		if auth != "" {
			h["authorization"] = auth
		}
		if override != "" {
			h["x-http-method-override"] = override
		}
		req := checkRequest(method, path, h)
		if raw {
			req = rawHeaders(req)
		}
		resp, err := svc.Check(t.Context(), req)
		if err != nil || resp == nil {
			t.Fatalf("Check: %v %v", resp, err)
		}
		a := readAnswer(t, resp)
		switch {
		case a.code == codes.Internal:
			t.Fatalf("internal error: %v", resp)
		case a.code == codes.OK && (auth != "" || override != ""):
			t.Fatalf("allowed with authorization %q, override %q: %v", auth, override, resp)
		case a.code != codes.OK && a.body["allow"] != false:
			t.Fatalf("denied without allow false: %v", resp)
		}
	})
}

// TestExtAuthzHeldBackMessage: a client that declares a message's length
// and holds the rest back gets its call answered (a deny, or a status)
// within limits.write_timeout, whatever deadline it asked for, instead of
// holding a goroutine and the message's buffer as long as the connection
// lives: a Check, and a health Watch (a stream meant to last, whose
// request must still arrive). The server announces its bound on a
// connection's concurrent calls.
func TestExtAuthzHeldBackMessage(t *testing.T) {
	for _, path := range []string{"/envoy.service.auth.v3.Authorization/Check", healthpb.Health_Watch_FullMethodName} {
		t.Run(path, func(t *testing.T) { heldBackMessage(t, path) })
	}
}

func heldBackMessage(t *testing.T, path string) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.WriteTimeout = 300 * time.Millisecond
	}})
	c, err := net.Dial("tcp", x.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := h2Client(t, c)
	headers := grpcCallHeaders(path, [2]string{"te", "trailers"},
		[2]string{"grpc-timeout", "1M"}) // a minute: longer than the server's bound
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	// A message of 1000 bytes, of which 10 are sent.
	if err := fr.WriteData(1, false, append([]byte{0, 0, 0, 0x03, 0xe8}, make([]byte, 10)...)); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	var maxStreams uint32
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("the held-back call was not ended (%v after sending): %v", time.Since(sent), err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if v, ok := f.Value(http2.SettingMaxConcurrentStreams); ok {
				maxStreams = v
			}
			if !f.IsAck() {
				fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame, *http2.HeadersFrame:
			if f.Header().StreamID != 1 {
				continue
			}
			if _, reset := f.(*http2.RSTStreamFrame); reset {
				t.Errorf("the call was reset, not answered (%v after sending)", time.Since(sent))
			}
			if waited := time.Since(sent); waited > 5*time.Second {
				t.Errorf("call ended after %v, want about limits.write_timeout", waited)
			}
			if maxStreams != MaxStreams {
				t.Errorf("MAX_CONCURRENT_STREAMS = %d, want %d", maxStreams, MaxStreams)
			}
			return
		}
	}
}

// TestExtAuthzWatchOutlivesWriteTimeout: a health Watch whose request
// arrived lasts beyond limits.write_timeout (only its request is bounded),
// and ends when the server stops.
func TestExtAuthzWatchOutlivesWriteTimeout(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.WriteTimeout = 200 * time.Millisecond
	}})
	watch, err := x.health.Watch(t.Context(), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := watch.Recv(); err != nil || st.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status: %v, %v", st, err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := watch.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		t.Fatalf("the Watch ended after its request had arrived: %v", err)
	case <-time.After(4 * 200 * time.Millisecond):
	}
	if err := x.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the Watch did not end when the server stopped")
	}
}

// TestExtAuthzAnswerNotUTF8: a policy's reason or header value holding
// bytes that are not UTF-8 (urlquery.decode of a client's %FF) still
// answers with a CheckResponse: a proto3 string must be UTF-8, and an
// answer that did not encode was grpc-go's INTERNAL error, which Envoy's
// failure_mode_allow lets through, a deny included. The deny keeps its
// reason, made UTF-8; an allow whose header cannot be carried is a policy
// error.
func TestExtAuthzAnswerNotUTF8(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	if err := x.engine.Load(t.Context(), authztest.Policy(t, "", `package authz

tenant := urlquery.decode(input.context.attributes.query)

allow if startswith(tenant, "ok")

reasons contains sprintf("tenant %s is not allowed", [tenant]) if not allow

headers := {"x-verdict-tenant": tenant} if allow
`)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		query      string
		wantCode   codes.Code
		wantHTTP   int
		wantReason string
	}{
		{query: "%FF", wantCode: codes.PermissionDenied, wantHTTP: http.StatusUnauthorized, wantReason: "tenant \uFFFD is not allowed"},
		{query: "ok%FF", wantCode: codes.Internal, wantHTTP: http.StatusInternalServerError, wantReason: `"x-verdict-tenant" has a value that is not UTF-8`},
		{query: "ok", wantCode: codes.OK, wantHTTP: http.StatusOK},
	} {
		t.Run(tc.query, func(t *testing.T) {
			resp, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog?"+tc.query, nil))
			if err != nil {
				t.Fatalf("Check: %v, want a CheckResponse", err)
			}
			a := readAnswer(t, resp)
			if a.code != tc.wantCode || a.http != tc.wantHTTP || !strings.Contains(a.reasons(), tc.wantReason) {
				t.Errorf("answer %v %d %s, want %v %d %s", a.code, a.http, a.reasons(), tc.wantCode, tc.wantHTTP, tc.wantReason)
			}
			if msg := resp.GetStatus().GetMessage(); !utf8.ValidString(msg) {
				t.Errorf("status message %q is not UTF-8", msg)
			}
		})
	}
}
