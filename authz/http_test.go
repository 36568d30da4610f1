package authz_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

func TestBearerToken(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    string
		wantErr bool
	}{
		{name: "absent"},
		{name: "bearer", values: []string{"Bearer abc.def.ghi"}, want: "abc.def.ghi"},
		{name: "scheme case-insensitive", values: []string{"bEaReR abc"}, want: "abc"},
		{name: "extra spaces", values: []string{"  Bearer   abc  "}, want: "abc"},
		{name: "basic", values: []string{"Basic dXNlcjpwYXNz"}, wantErr: true},
		{name: "scheme only", values: []string{"Bearer"}, wantErr: true},
		{name: "empty token", values: []string{"Bearer "}, wantErr: true},
		{name: "empty header", values: []string{""}, wantErr: true},
		{name: "token with space", values: []string{"Bearer a b"}, wantErr: true},
		{name: "two headers", values: []string{"Bearer a", "Bearer b"}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.values {
				h.Add("Authorization", v)
			}
			got, err := authz.BearerToken(h)
			if tc.wantErr {
				if !errors.Is(err, token.ErrMalformed) || !errors.Is(err, token.ErrInvalid) {
					t.Fatalf("err = %v, want token.ErrMalformed", err)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("BearerToken = %q, %v; want %q", string(got), err, tc.want)
			}
		})
	}
}

func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  x.y.z", "Basic Zm9v", "Bearer", "", "Bearer a\tb", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		h := http.Header{"Authorization": {header}}
		raw, err := authz.BearerToken(h)
		tok := string(raw)
		if err != nil {
			if tok != "" || !errors.Is(err, token.ErrMalformed) {
				t.Fatalf("error %v with token %q", err, tok)
			}
			return
		}
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") || !strings.Contains(header, tok) {
			t.Fatalf("BearerToken(%q) = %q", header, tok)
		}
	})
}

const middlewarePolicy = `package authz

default allow := false

allow if input.action.path == "/public"

allow if {
	input.subject.authenticated
	input.action.name == "orders:read"
}

headers := {"x-user": input.subject.id}
`

func TestMiddleware(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}},
		authztest.Policy(t, "mw", middlewarePolicy))
	handler := e.Middleware(authz.MiddlewareOptions{
		Action: func(r *http.Request) authz.Action {
			if strings.HasPrefix(r.URL.Path, "/orders") && r.Method == http.MethodGet {
				return authz.Action{Name: "orders:read"}
			}
			return authz.Action{}
		},
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := authz.DecisionFromContext(r.Context())
		if !ok || !d.Allow {
			t.Error("handler reached without an allow decision in context")
		}
		io.WriteString(w, "hello "+d.Headers["x-user"])
	}))
	srv := httptest.NewServer(handler)
	defer srv.Close()

	valid := is.Mint(t, map[string]any{"sub": "alice"})
	tests := []struct {
		name, method, path, auth string
		wantStatus               int
		wantBody                 string
		wantAuthenticate         string
		wantReason               string
	}{
		{name: "allowed", method: "GET", path: "/orders/1", auth: "Bearer " + valid, wantStatus: 200, wantBody: "hello alice"},
		{name: "public", method: "GET", path: "/public", wantStatus: 200, wantBody: "hello "},
		{name: "anonymous denied", method: "GET", path: "/orders/1", wantStatus: 401, wantAuthenticate: "Bearer", wantReason: "policy: allow is not true"},
		{name: "denied", method: "DELETE", path: "/orders/1", auth: "Bearer " + valid, wantStatus: 403, wantReason: "policy: allow is not true"},
		{name: "invalid token", method: "GET", path: "/public", auth: "Bearer " + tamper(valid), wantStatus: 401,
			wantAuthenticate: `Bearer error="invalid_token"`, wantReason: "token: bad_signature"},
		{name: "not bearer", method: "GET", path: "/public", auth: "Basic Zm9vOmJhcg==", wantStatus: 401,
			wantAuthenticate: `Bearer error="invalid_token"`, wantReason: "token: malformed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), tc.method, srv.URL+tc.path, nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", resp.StatusCode, tc.wantStatus, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.wantAuthenticate {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.wantAuthenticate)
			}
			if tc.wantStatus == 200 {
				if string(body) != tc.wantBody {
					t.Errorf("body = %q, want %q", body, tc.wantBody)
				}
				return
			}
			var d authz.Decision
			if err := json.Unmarshal(body, &d); err != nil || d.Allow || len(d.Reasons) == 0 || d.Reasons[0] != tc.wantReason {
				t.Errorf("deny body = %s (%v), want reason %q", body, err, tc.wantReason)
			}
		})
	}
}

// TestMiddlewareRefusesMethodOverrides: a request the policy allows as GET
// but carrying a method override (a _method query parameter, an
// X-HTTP-Method-Override header, also written with '_') is refused with
// 400, as on /v1/check: a handler behind the middleware that honours the
// override would run another method than the one decided.
func TestMiddlewareRefusesMethodOverrides(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "mw", middlewarePolicy))
	h := e.Middleware(authz.MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	for _, tc := range []struct {
		target, header string
		want           int
	}{
		{"/public", "", 200},
		{"/public?page=2", "", 200},
		{"/public?_method=DELETE", "", 400},
		{"/public?a=1&_METHOD=DELETE", "", 400},
		{"/public", "X-HTTP-Method-Override", 400},
		{"/public", "X_Http_Method", 400},
		{"/public", "X.Http.Method.Override", 400}, // PHP: HTTP_X_HTTP_METHOD_OVERRIDE
		{"/public", "X-Original.Url", 400},
		{"/public", "X-Http-Methods", 200},
		{"/public", "X-Original-URL", 400},
		{"/public", "X-Rewrite-Url", 400},
		{"/public", "X-Original-URI", 200}, // nginx's own name, set by the proxy
	} {
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		if tc.header != "" {
			r.Header[tc.header] = []string{"DELETE"}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %s: %d, want %d: %s", tc.target, tc.header, w.Code, tc.want, w.Body)
		}
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name      string
		d         authz.Decision
		err       error
		anonymous bool
		want      int
	}{
		{"allow", authz.Decision{Allow: true}, nil, false, 200},
		{"deny with token", authz.Decision{}, nil, false, 403},
		{"deny anonymous", authz.Decision{}, nil, true, 401},
		{"token error", authz.Decision{}, authz.ErrToken, false, 401},
		{"caller error", authz.Decision{}, authz.ErrCaller, true, 403},
		{"invalid request", authz.Decision{}, authz.ErrInvalidRequest, false, 400},
		{"not ready", authz.Decision{}, authz.ErrNotReady, false, 503},
		{"policy error", authz.Decision{Allow: true}, authz.ErrPolicy, false, 500},
	}
	for _, tc := range tests {
		if got := authz.HTTPStatus(tc.d, tc.err, tc.anonymous); got != tc.want {
			t.Errorf("%s: HTTPStatus = %d, want %d", tc.name, got, tc.want)
		}
	}
}

// TestRequestNeverShowsItsTokens: a Request (or its Caller) printed with any
// fmt verb or logged with slog shows a redacted token, never the token.
func TestRequestNeverShowsItsTokens(t *testing.T) {
	const subject, service = "eyJhbGciOiJFUzI1NiJ9.c3ViamVjdA.c2ln", "eyJhbGciOiJFUzI1NiJ9.c2VydmljZQ.c2ln"
	req := authz.Request{Token: subject, Caller: authz.Caller{Token: service}, Action: authz.Action{Name: "orders:read"}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("decide", "request", req, "caller", req.Caller)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("decide", "request", req)
	for _, out := range []string{
		fmt.Sprintf("%v %+v %#v", req, req, req), fmt.Sprint(req.Caller), logged.String(),
	} {
		if strings.Contains(out, "c3ViamVjdA") || strings.Contains(out, "c2VydmljZQ") {
			t.Errorf("a token shows in %s", out)
		}
		if !strings.Contains(out, "redacted jwt") {
			t.Errorf("no redacted token in %s", out)
		}
	}
}

// TestMiddlewareAbsoluteForm: a request target in absolute form is decided
// on the path the handler serves: with no path before its query
// (GET http://h?x=/public/), that is "/", never a '/' found in the query;
// the policy allows only /public here, and the root holds a file only an
// allowed request may read. A CONNECT request has no path to decide.
func TestMiddlewareAbsoluteForm(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "mw",
		"package authz\n\nallow if startswith(input.action.path, \"/public\")\n"))
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "index.html"), "ROOT-ONLY-FOR-ADMINS")
	authztest.WriteFile(t, filepath.Join(dir, "public", "index.html"), "public")
	srv := httptest.NewServer(e.Middleware(authz.MiddlewareOptions{})(http.FileServer(http.Dir(dir))))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		line string
		want int
	}{
		{"GET /public/ HTTP/1.1", 200},
		{"GET http://h/public/ HTTP/1.1", 200},
		{"GET / HTTP/1.1", 401},
		{"GET http://h?x=/public/ HTTP/1.1", 401},
		{"GET http://h?/public HTTP/1.1", 401},
		{"GET http://h?_method=DELETE&x=/public/a HTTP/1.1", 400},
		{"CONNECT h:443 HTTP/1.1", 400},
		// An authority only right after "scheme:"; the query from its '?'.
		{"GET x:/admin/://h/public HTTP/1.1", 400},
		{"GET x:public/secret HTTP/1.1", 400},
		{"CONNECT /public/ HTTP/1.1", 200},
		{"GET http:/public/?_method=DELETE HTTP/1.1", 400},
	} {
		status, body := rawRequest(t, srv, tc.line)
		if status != tc.want || tc.want != 200 && strings.Contains(body, "ROOT-ONLY") {
			t.Errorf("%s: %d %q, want %d", tc.line, status, body, tc.want)
		}
	}
}

// TestMiddlewareAgreesWithServeMux: behind the middleware, a Go 1.22
// ServeMux routes by method and pattern to the byte; the policy judges
// what the mux routes. A trailing slash reaches a subtree's pattern, so it
// is kept for the policy (it was dropped, and "/users/1/" passed for
// "/users/1"); a lower-case method reaches a method-less pattern, so it is
// refused (it was upper-cased, and "get" passed for GET).
func TestMiddlewareAgreesWithServeMux(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "mw", `package authz

# Profiles are public to read; nothing else is.
allow if {
	input.action.method == "GET"
	count(input.action.segments) == 2
	input.action.segments[0] == "users"
}
`))
	mux := http.NewServeMux()
	mux.HandleFunc("GET /users/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "public profile") })
	mux.HandleFunc("GET /users/{id}/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "PRIVATE dashboard") })
	mux.HandleFunc("/users/{id}", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "PRIVATE edit") })
	srv := httptest.NewServer(e.Middleware(authz.MiddlewareOptions{})(mux))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		line string
		want int
	}{
		{"GET /users/1 HTTP/1.1", 200},
		{"GET /users/1/ HTTP/1.1", 401},
		{"GET /users/1/settings HTTP/1.1", 401},
		{"get /users/1 HTTP/1.1", 400},
		{"DELETE /users/1 HTTP/1.1", 401},
	} {
		status, body := rawRequest(t, srv, tc.line)
		if status != tc.want || strings.Contains(body, "PRIVATE") {
			t.Errorf("%s: %d %q, want %d", tc.line, status, body, tc.want)
		}
	}
}

// rawRequest sends srv a request with the request line as written (no
// client library cleans it) and returns the answer's status and body.
func rawRequest(t *testing.T, srv *httptest.Server, line string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "%s\r\nHost: h\r\nConnection: close\r\n\r\n", line)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}
