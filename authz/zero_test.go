package authz_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestZeroAndNilValuesDenyWithoutPanicking: an Engine or Pinned not built
// by New or Pin (zero, or nil) never panics: it decides every request as
// not ready, whatever asks (Decide, a Pinned, EvaluateInput).
func TestZeroAndNilValuesDenyWithoutPanicking(t *testing.T) {
	var nilEngine *authz.Engine
	var nilPinned *authz.Pinned
	req := authz.Request{Action: authz.Action{Name: "read"}}
	tests := []struct {
		name         string
		decide       func() (authz.Decision, error)
		wantRevision func() string // nil: no Revision to ask
	}{
		{name: "zero Engine", decide: func() (authz.Decision, error) { return new(authz.Engine).Decide(t.Context(), req) }},
		{name: "nil Engine", decide: func() (authz.Decision, error) { return nilEngine.Decide(t.Context(), req) }},
		{name: "zero Engine, EvaluateInput", decide: func() (authz.Decision, error) {
			return new(authz.Engine).EvaluateInput(t.Context(), map[string]any{}, authz.InputOptions{})
		}},
		{name: "nil Engine, EvaluateInput", decide: func() (authz.Decision, error) {
			return nilEngine.EvaluateInput(t.Context(), map[string]any{}, authz.InputOptions{})
		}},
		{name: "zero Engine's Pin", decide: func() (authz.Decision, error) { return new(authz.Engine).Pin().Decide(t.Context(), req) },
			wantRevision: func() string { return new(authz.Engine).Pin().Revision() }},
		{name: "nil Engine's Pin", decide: func() (authz.Decision, error) { return nilEngine.Pin().Decide(t.Context(), req) },
			wantRevision: func() string { return nilEngine.Pin().Revision() }},
		{name: "zero Pinned", decide: func() (authz.Decision, error) { return new(authz.Pinned).Decide(t.Context(), req) },
			wantRevision: func() string { return new(authz.Pinned).Revision() }},
		{name: "nil Pinned", decide: func() (authz.Decision, error) { return nilPinned.Decide(t.Context(), req) },
			wantRevision: func() string { return nilPinned.Revision() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := noPanic(t, tc.decide)
			if d.Allow || d.ID == "" || len(d.Reasons) != 1 || d.Reasons[0] != "not_ready: no policy loaded" {
				t.Errorf("decision = %+v, want a not_ready deny", d)
			}
			if !errors.Is(err, authz.ErrNotReady) {
				t.Errorf("err = %v, want ErrNotReady", err)
			}
			if tc.wantRevision != nil {
				if got, _ := noPanic(t, func() (string, error) { return tc.wantRevision(), nil }); got != "" {
					t.Errorf("Revision = %q, want \"\"", got)
				}
			}
		})
	}
}

// TestZeroAndNilEngineRefuseLoadAndReportNotReady: Load refuses (an
// Engine not built with New has no verifier or caches to serve with) and
// Status is not ready, without panicking.
func TestZeroAndNilEngineRefuseLoadAndReportNotReady(t *testing.T) {
	snap := authztest.Policy(t, "r", allowAll)
	for name, e := range map[string]*authz.Engine{"zero": new(authz.Engine), "nil": nil} {
		t.Run(name, func(t *testing.T) {
			if _, err := noPanic(t, func() (struct{}, error) { return struct{}{}, e.Load(t.Context(), snap) }); !errors.Is(err, authz.ErrCompile) {
				t.Errorf("Load = %v, want ErrCompile", err)
			}
			if st, _ := noPanic(t, func() (authz.Status, error) { return e.Status(), nil }); st.Ready {
				t.Errorf("Status().Ready = true")
			}
			noPanic(t, func() (struct{}, error) { e.ForgetKey("iss", "kid"); return struct{}{}, nil })
			if d, err := noPanic(t, func() (authz.Decision, error) {
				return e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}})
			}); d.Allow || !errors.Is(err, authz.ErrNotReady) {
				t.Errorf("Decide after Load = %+v, %v; want a not_ready deny", d, err)
			}
		})
	}
}

// TestMiddlewareDenyWithoutPanicking: the middleware answers every deny,
// the policy's (err nil) as much as a refusal's, through a custom Deny
// that reads ReasonFor(err) and d.Reasons, and through the default one,
// also on an Engine not built with New; nothing reaches next.
func TestMiddlewareDenyWithoutPanicking(t *testing.T) {
	loaded := newEngine(t, authz.Options{}, authztest.Policy(t, "r", "package authz\n\ndefault allow := false\n"))
	custom := func(w http.ResponseWriter, r *http.Request, d authz.Decision, err error) {
		status := authz.HTTPStatus(d, err, r.Header.Get("Authorization") == "")
		w.Header().Set("X-Reason-For", authz.ReasonFor(err))
		http.Error(w, d.Reasons[0], status)
	}
	tests := []struct {
		name         string
		e            *authz.Engine
		deny         func(http.ResponseWriter, *http.Request, authz.Decision, error)
		header       http.Header
		wantStatus   int
		wantBody     string
		wantReasonOf string
	}{
		{name: "policy deny, custom Deny", e: loaded, deny: custom, wantStatus: http.StatusUnauthorized,
			wantBody: "policy: allow is not true\n", wantReasonOf: ""},
		{name: "refusal, custom Deny", e: loaded, deny: custom, header: http.Header{"Authorization": {"Basic x"}},
			wantStatus: http.StatusUnauthorized, wantBody: "token: malformed\n", wantReasonOf: "token: malformed"},
		{name: "zero Engine, custom Deny", e: new(authz.Engine), deny: custom, wantStatus: http.StatusServiceUnavailable,
			wantBody: "not_ready: no policy loaded\n", wantReasonOf: "not_ready: no policy loaded"},
		{name: "zero Engine, default Deny", e: new(authz.Engine), wantStatus: http.StatusServiceUnavailable},
		{name: "nil Engine, default Deny", e: nil, wantStatus: http.StatusServiceUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a denied request reached next") })
			h := tc.e.Middleware(authz.MiddlewareOptions{Deny: tc.deny})(next)
			r := httptest.NewRequest(http.MethodGet, "/orders/1", nil)
			for k, v := range tc.header {
				r.Header[k] = v
			}
			w := httptest.NewRecorder()
			noPanic(t, func() (struct{}, error) { h.ServeHTTP(w, r); return struct{}{}, nil })
			if w.Code != tc.wantStatus {
				t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
			}
			if tc.deny == nil {
				return
			}
			if got := w.Body.String(); got != tc.wantBody {
				t.Errorf("body = %q, want %q", got, tc.wantBody)
			}
			if got := w.Header().Get("X-Reason-For"); got != tc.wantReasonOf {
				t.Errorf("ReasonFor(err) = %q, want %q", got, tc.wantReasonOf)
			}
		})
	}
}

// noPanic runs f, failing the test (not crashing it) when f panics.
func noPanic[T any](t *testing.T, f func() (T, error)) (got T, err error) {
	t.Helper()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("panic: %v", p)
			err = fmt.Errorf("panicked: %v", p)
		}
	}()
	return f()
}

// TestTypedNilRefusal: a nil *Refusal held in an error (a function that
// returns *Refusal handing back nil as an error) reads as a policy error
// everywhere it can go, never a panic, never an allow.
func TestTypedNilRefusal(t *testing.T) {
	var r *authz.Refusal
	var err error = r
	got, _ := noPanic(t, func() (string, error) {
		return strings.Join([]string{err.Error(), authz.ReasonFor(err), r.Code(), r.Reason()}, "|"), nil
	})
	if want := "policy evaluation failed|policy_error: policy evaluation failed|policy_error|policy_error: policy evaluation failed"; got != want {
		t.Errorf("messages = %q, want %q", got, want)
	}
	d, _ := noPanic(t, func() (authz.Decision, error) { return authz.Deny(err), nil })
	if d.Allow || len(d.Reasons) != 1 {
		t.Errorf("Deny = %+v, want a deny with one reason", d)
	}
	if status, _ := noPanic(t, func() (int, error) { return authz.HTTPStatus(d, err, false), nil }); status != 500 {
		t.Errorf("HTTPStatus = %d, want 500", status)
	}
	if !errors.Is(err, authz.ErrPolicy) {
		t.Errorf("errors.Is(err, ErrPolicy) is false")
	}
}
