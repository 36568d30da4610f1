package client_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/client"
	"github.com/verdict-pdp/verdict/server"
)

// verdict is a real Verdict HTTP front with the default policies and a
// development issuer, on a loopback test server.
type verdict struct {
	*httptest.Server
	minter *devtoken.Minter
}

func newVerdict(t testing.TB) *verdict {
	t.Helper()
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	e, err := authz.New(authz.Options{Tokens: m.TokenOptions()})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background(), authztest.DefaultPolicies(t)); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Options{Engine: e})
	if err != nil {
		t.Fatal(err)
	}
	v := &verdict{Server: httptest.NewServer(s.Handler()), minter: m}
	t.Cleanup(v.Close)
	return v
}

func (v *verdict) token(t testing.TB, sub string, claims map[string]any) string {
	t.Helper()
	tok, err := v.minter.Mint(sub, claims, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// newVerdictClient starts newVerdict and returns it, a client of it with
// the default options, and a token of alice with the role viewer.
func newVerdictClient(t testing.TB) (v *verdict, c *client.Client, viewer string) {
	t.Helper()
	v = newVerdict(t)
	return v, newClient(t, client.Options{URL: v.URL}), v.token(t, "alice", map[string]any{"roles": []string{"viewer"}})
}

func newClient(t testing.TB, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDecide asks a real server: allow, deny, a refused token, a service
// caller, and an invalid request, each answered as the server answers it.
func TestDecide(t *testing.T) {
	v, c, viewer := newVerdictClient(t)
	payments := v.token(t, "payments", map[string]any{"azp": "payments", "aud": devtoken.CallerAudience})
	for _, tc := range []struct {
		name       string
		req        client.Request
		wantAllow  bool
		wantReason string
		wantErr    error
		wantToken  bool
	}{
		{name: "allow", req: client.Request{Token: viewer, Action: client.Action{Name: "orders:read"}},
			wantAllow: true, wantReason: "role viewer grants orders:read"},
		{name: "deny", req: client.Request{Token: viewer, Action: client.Action{Name: "orders:delete"}},
			wantReason: "no role grants orders:delete"},
		{name: "derived from method and path", req: client.Request{Token: viewer, Action: client.Action{Method: "GET", Path: "/orders/42"}},
			wantAllow: true, wantReason: "role viewer grants orders:read"},
		{name: "refused token", req: client.Request{Token: viewer + "x", Action: client.Action{Name: "orders:read"}},
			wantReason: "token: malformed", wantToken: true},
		{name: "service caller", req: client.Request{Caller: client.Caller{Token: payments}, Action: client.Action{Name: "inventory:reserve"}},
			wantAllow: true, wantReason: "service payments may call inventory:reserve"},
		{name: "invalid request", req: client.Request{Action: client.Action{Method: "GET", Path: "/a/../b"}},
			wantReason: "client: ", wantErr: client.ErrInvalidRequest},
		{name: "no action", req: client.Request{}, wantReason: "client: ", wantErr: client.ErrInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := c.Decide(t.Context(), tc.req)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if d.Allow != tc.wantAllow || len(d.Reasons) == 0 || !strings.HasPrefix(d.Reasons[0], tc.wantReason) {
				t.Errorf("decision %+v, want allow=%v and a reason starting %q", d, tc.wantAllow, tc.wantReason)
			}
			if err == nil && d.ID == "" {
				t.Error("a decision without an ID")
			}
			if d.TokenRefused() != tc.wantToken {
				t.Errorf("TokenRefused = %v", d.TokenRefused())
			}
		})
	}
}

// TestFailsClosed: whatever goes wrong between the client and the server,
// the answer is a deny with a reason, and an error.
func TestFailsClosed(t *testing.T) {
	allowAll := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":[]}`)
	}
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
		wantErr error
	}{
		{"policy error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(500)
			io.WriteString(w, `{"allow":false,"error":{"code":"policy_error","message":"boom"}}`)
		}, client.ErrPolicy},
		{"not ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }, client.ErrUnavailable},
		{"not a decision", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"allow":true}`) }, client.ErrProtocol},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `allow`) }, client.ErrProtocol},
		// A 200 is a decision only in the server's own shape: encoding/json
		// took the last of two "allow"s, matched "Allow" to allow, read no
		// "allow" at all as a deny and ignored what followed the object.
		{"allow given twice", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","allow":false,"allow":true,"reasons":[]}`)
		}, client.ErrProtocol},
		{"Allow capitalised", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","Allow":true,"reasons":[]}`)
		}, client.ErrProtocol},
		{"no allow", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"decision_id":"X","reasons":[]}`) }, client.ErrProtocol},
		{"allow as a string", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","allow":"true","reasons":[]}`)
		}, client.ErrProtocol},
		{"two answers", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","allow":false,"reasons":[]}{"decision_id":"Y","allow":true}`)
		}, client.ErrProtocol},
		{"headers given twice", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":[],"headers":{"X-User":"a","X-User":"b"}}`)
		}, client.ErrProtocol},
		{"an allow too large to read", func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":["`+strings.Repeat("a", client.MaxAnswerBytes)+`"]}`)
		}, client.ErrProtocol},
		{"too slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(2 * time.Second):
			}
			allowAll(w, r)
		}, client.ErrUnavailable},
		{"redirected", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := httptest.NewServer(tc.handler)
			defer s.Close()
			// Only the slow server needs the short timeout: reading a
			// megabyte under -race on a busy machine can take longer.
			timeout := 10 * time.Second
			if tc.name == "too slow" {
				timeout = 300 * time.Millisecond
			}
			c := newClient(t, client.Options{URL: s.URL, Timeout: timeout, Retries: -1})
			d, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}})
			if err == nil || d.Allow || len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "client: ") {
				t.Fatalf("%+v, %v; want a deny with a client: reason and an error", d, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
	// Nobody listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, client.Options{URL: "http://" + addr, Retries: 1, RetryDelay: time.Millisecond})
	if d, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}}); !errors.Is(err, client.ErrUnavailable) || d.Allow {
		t.Errorf("no server: %+v, %v", d, err)
	}
}

// TestRetriesOnlyWhatIsSafe: a server that is not ready yet is asked again;
// a policy error or an invalid request is not.
func TestRetriesOnlyWhatIsSafe(t *testing.T) {
	for _, tc := range []struct {
		first     int
		wantCalls int64
		wantAllow bool
	}{
		{http.StatusServiceUnavailable, 2, true},
		{http.StatusInternalServerError, 1, false},
		{http.StatusBadRequest, 1, false},
	} {
		var calls atomic.Int64
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if calls.Add(1) == 1 {
				w.WriteHeader(tc.first)
				return
			}
			io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":[]}`)
		}))
		c := newClient(t, client.Options{URL: s.URL, Retries: 3, RetryDelay: time.Millisecond})
		d, _ := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}})
		if calls.Load() != tc.wantCalls || d.Allow != tc.wantAllow {
			t.Errorf("first answer %d: %d calls, allow %v; want %d calls, allow %v", tc.first, calls.Load(), d.Allow, tc.wantCalls, tc.wantAllow)
		}
		s.Close()
	}
}

// TestAnswerStatuses: what each status from the server's side is, whether
// it is retried, and what the middleware answers the end user. Every 4xx
// was ErrInvalidRequest, a 400 to the end user: a gateway refusing the
// service's own credentials (401, 403), a wrong base path (404) or a rate
// limit (429) was blamed on the request.
func TestAnswerStatuses(t *testing.T) {
	for _, tc := range []struct {
		status     int
		wantErr    error
		wantCalls  int64
		wantStatus int
	}{
		{status: http.StatusBadRequest, wantErr: client.ErrInvalidRequest, wantCalls: 1, wantStatus: http.StatusBadRequest},
		{status: http.StatusRequestEntityTooLarge, wantErr: client.ErrInvalidRequest, wantCalls: 1, wantStatus: http.StatusBadRequest},
		{status: http.StatusUnsupportedMediaType, wantErr: client.ErrInvalidRequest, wantCalls: 1, wantStatus: http.StatusBadRequest},
		{status: http.StatusUnauthorized, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusForbidden, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusNotFound, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusMethodNotAllowed, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusConflict, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusTemporaryRedirect, wantErr: client.ErrProtocol, wantCalls: 1, wantStatus: http.StatusInternalServerError},
		{status: http.StatusTooManyRequests, wantErr: client.ErrUnavailable, wantCalls: 2, wantStatus: http.StatusServiceUnavailable},
		{status: http.StatusServiceUnavailable, wantErr: client.ErrUnavailable, wantCalls: 2, wantStatus: http.StatusServiceUnavailable},
		{status: http.StatusInternalServerError, wantErr: client.ErrPolicy, wantCalls: 1, wantStatus: http.StatusInternalServerError},
	} {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			var calls atomic.Int64
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				calls.Add(1)
				w.WriteHeader(tc.status)
			}))
			defer s.Close()
			c := newClient(t, client.Options{URL: s.URL, Retries: 1, RetryDelay: time.Millisecond})
			d, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}})
			if d.Allow || !errors.Is(err, tc.wantErr) {
				t.Errorf("%+v, %v; want a deny with %v", d, err, tc.wantErr)
			}
			if got := calls.Load(); got != tc.wantCalls {
				t.Errorf("%d calls, want %d", got, tc.wantCalls)
			}
			calls.Store(0)
			w := httptest.NewRecorder()
			c.Middleware(client.MiddlewareOptions{})(http.NotFoundHandler()).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/orders/42", nil))
			if w.Code != tc.wantStatus {
				t.Errorf("middleware answered %d, want %d: %s", w.Code, tc.wantStatus, w.Body)
			}
		})
	}
	// A 429's Retry-After is honoured as a 503's: a retry that could only
	// start after the deadline is not made.
	var calls atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer s.Close()
	c := newClient(t, client.Options{URL: s.URL, Timeout: time.Second, RetryDelay: time.Millisecond})
	start := time.Now()
	if _, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}}); !errors.Is(err, client.ErrUnavailable) || calls.Load() != 1 {
		t.Errorf("429 with Retry-After: 5: %v after %d calls; want ErrUnavailable after one", err, calls.Load())
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("took %v; want the error at once", d)
	}
}

// TestRetryHonoursRetryAfter: an overloaded server's Retry-After is waited
// out before the retry, and a retry that could only start after the
// deadline is not waited for: the error comes back at once.
func TestRetryHonoursRetryAfter(t *testing.T) {
	var calls atomic.Int64
	var first, second atomic.Int64 // arrival times, UnixNano
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		switch calls.Add(1) {
		case 1:
			first.Store(time.Now().UnixNano())
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"allow":false,"error":{"code":"overloaded","message":"too many decisions at once"}}`)
		default:
			second.Store(time.Now().UnixNano())
			io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":[]}`)
		}
	}))
	defer s.Close()

	c := newClient(t, client.Options{URL: s.URL, Timeout: 3 * time.Second, RetryDelay: time.Millisecond})
	d, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}})
	if err != nil || !d.Allow || calls.Load() != 2 {
		t.Fatalf("%+v, %v after %d calls; want the retry's allow", d, err, calls.Load())
	}
	if gap := time.Duration(second.Load() - first.Load()); gap < time.Second {
		t.Errorf("retried %v after the first answer; the server asked for 1s", gap)
	}
	// Clients turned away together come back spread out, never sooner.
	// Their waits fall in [1s, 1.2s] (retryJitter); a round whose fastest
	// wait is past that was stalled (timers late, firing together) and says
	// nothing of the spread, so it is run again.
	for round := 0; ; round++ {
		waits := retryAfterWaits(t, 8)
		if len(waits) != 8 {
			break
		}
		if waits[0] < time.Second {
			t.Fatalf("8 clients retried after %v; want each at least 1s", waits)
		}
		if waits[0] > 1200*time.Millisecond && round < 3 {
			continue
		}
		if waits[7]-waits[0] < 10*time.Millisecond {
			t.Errorf("8 clients retried after %v; want them spread out", waits)
		}
		break
	}

	calls.Store(0)
	c = newClient(t, client.Options{URL: s.URL, Timeout: 500 * time.Millisecond, RetryDelay: time.Millisecond})
	d, err = c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}})
	if !errors.Is(err, client.ErrUnavailable) || d.Allow || calls.Load() != 1 {
		t.Fatalf("%+v, %v after %d calls; want one call and ErrUnavailable", d, err, calls.Load())
	}
	if !strings.Contains(err.Error(), "overloaded") && !strings.Contains(err.Error(), "too many decisions") {
		t.Errorf("err = %v; want the server's reason", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v; want it before the deadline, not the deadline", err)
	}
}

// TestConcurrentDecisions shares one client between goroutines (run with
// -race): every answer is the right one.
func TestConcurrentDecisions(t *testing.T) {
	_, c, viewer := newVerdictClient(t)
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			action, want := "orders:read", true
			if i%2 == 1 {
				action, want = "orders:delete", false
			}
			for range 20 {
				d, err := c.Decide(context.Background(), client.Request{Token: viewer, Action: client.Action{Name: action}})
				if err != nil || d.Allow != want {
					t.Errorf("%s: %+v, %v", action, d, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestMiddleware mirrors the engine's middleware for a remote decision
// service: allowed requests reach the handler with their decision; the rest
// are answered 401/403 (or 503 when the service is unreachable) and never
// reach it.
func TestMiddleware(t *testing.T) {
	v, c, viewer := newVerdictClient(t)
	var reached atomic.Int64
	h := c.Middleware(client.MiddlewareOptions{})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		d, ok := client.DecisionFromContext(r.Context())
		if !ok || !d.Allow {
			t.Error("handler reached without an allow decision in the context")
		}
	}))
	for _, tc := range []struct {
		name     string
		method   string
		auth     string
		want     int
		wantAuth string
	}{
		{"viewer reads", http.MethodGet, "Bearer " + viewer, 200, ""},
		{"viewer deletes", http.MethodDelete, "Bearer " + viewer, 403, ""},
		{"anonymous", http.MethodGet, "", 401, "Bearer"},
		{"malformed header", http.MethodGet, "Bearer a b", 401, `Bearer error="invalid_token"`},
		{"refused token", http.MethodGet, "Bearer " + viewer + "x", 401, `Bearer error="invalid_token"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := reached.Load()
			r := httptest.NewRequest(tc.method, "/orders/42", nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want || w.Header().Get("WWW-Authenticate") != tc.wantAuth {
				t.Fatalf("%d (WWW-Authenticate %q), want %d (%q): %s", w.Code, w.Header().Get("WWW-Authenticate"), tc.want, tc.wantAuth, w.Body)
			}
			if got := reached.Load() - before; (tc.want == 200) != (got == 1) {
				t.Errorf("handler reached %d times", got)
			}
		})
	}
	// Method overrides are refused, as on /v1/check: the query parameter
	// by the server, the header before asking.
	for _, mk := range []func() *http.Request{
		func() *http.Request { return httptest.NewRequest(http.MethodGet, "/orders/42?_method=DELETE", nil) },
		func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
			r.Header.Set("X-HTTP-Method-Override", "DELETE")
			return r
		},
		// A CONNECT request for a host has no path to decide.
		func() *http.Request {
			r := httptest.NewRequest(http.MethodConnect, "/", nil)
			r.RequestURI = "h:443"
			return r
		},
		// Nor has an opaque target.
		func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RequestURI, r.URL.Opaque = "x:orders/42", "orders/42"
			return r
		},
		// The absolute form: the path is "/", not the '/' in the query.
		func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RequestURI = "http://h?_method=DELETE&x=/orders/42"
			return r
		},
	} {
		before := reached.Load()
		r := mk()
		r.Header.Set("Authorization", "Bearer "+viewer)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusBadRequest || reached.Load() != before {
			t.Errorf("%s with %v: %d, want 400 and the handler not reached: %s", r.URL, r.Header, w.Code, w.Body)
		}
	}
	v.Close() // the decision service goes away: fail closed
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/orders/42", nil)
	r.Header.Set("Authorization", "Bearer "+viewer)
	h.ServeHTTP(w, r)
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("service down: %d, want 503", w.Code)
	}
}

// TestMiddlewareRemoteAddr: a policy that denies a blocked address denies
// through the client's middleware as through the engine's; the client's
// left input.context.remote_addr out, and allowed every address.
func TestMiddlewareRemoteAddr(t *testing.T) {
	for _, tc := range []struct {
		name    string
		blocked string
		want    int
	}{
		// The address alone, as /v1/check and ext_authz give it: never
		// with the port r.RemoteAddr has.
		{name: "blocked", blocked: "127.0.0.1", want: http.StatusUnauthorized}, // anonymous
		{name: "another blocked", blocked: "192.0.2.1", want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			engine, err := authz.New(authz.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := engine.Load(t.Context(), authztest.Policy(t, "r1", `package authz
allow if not blocked
blocked if input.context.remote_addr == "`+tc.blocked+`"
`)); err != nil {
				t.Fatal(err)
			}
			srv, err := server.New(server.Options{Engine: engine})
			if err != nil {
				t.Fatal(err)
			}
			pdp := httptest.NewServer(srv.Handler())
			defer pdp.Close()
			c := newClient(t, client.Options{URL: pdp.URL, Retries: -1})
			handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
			for name, mw := range map[string]func(http.Handler) http.Handler{
				"engine": engine.Middleware(authz.MiddlewareOptions{}),
				"client": c.Middleware(client.MiddlewareOptions{}),
			} {
				s := httptest.NewServer(mw(handler))
				resp, err := http.Get(s.URL + "/orders")
				s.Close()
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != tc.want {
					t.Errorf("%s middleware: %d, want %d", name, resp.StatusCode, tc.want)
				}
			}
		})
	}
}

// TestNoEngineDependency: a service that imports the client does not pull
// OPA, the engine or the server into its binary.
func TestNoEngineDependency(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list unavailable: %v", err)
	}
	for _, forbidden := range []string{
		"github.com/open-policy-agent/opa", "github.com/verdict-pdp/verdict/authz",
		"github.com/verdict-pdp/verdict/server", "github.com/golang-jwt/jwt",
	} {
		if strings.Contains(string(out), forbidden) {
			t.Errorf("package client depends on %s", forbidden)
		}
	}
}

// retryAfterWaits has n clients, each turned away once by its own server
// with Retry-After: 1, decide at once, and returns how long each took, in
// order.
func retryAfterWaits(t *testing.T, n int) []time.Duration {
	t.Helper()
	var waits []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			var asked atomic.Int64
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				if asked.Add(1) == 1 {
					w.Header().Set("Retry-After", "1")
					w.WriteHeader(http.StatusServiceUnavailable)
					return
				}
				io.WriteString(w, `{"decision_id":"X","allow":true,"reasons":[]}`)
			}))
			defer s.Close()
			c := newClient(t, client.Options{URL: s.URL, Timeout: 3 * time.Second, RetryDelay: time.Millisecond})
			start := time.Now()
			if _, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "x"}}); err != nil {
				t.Error(err)
			}
			mu.Lock()
			waits = append(waits, time.Since(start))
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(waits)
	return waits
}
