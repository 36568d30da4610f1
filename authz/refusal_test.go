package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// TestRefusalReasons: a refusal's reason is its category's code and its
// detail; errors.Is finds its category and its cause.
func TestRefusalReasons(t *testing.T) {
	tokenErr := func() error {
		is := authztest.NewIssuer(t, "ES256")
		v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{is.Config()}})
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), "a.b")
		return err
	}()
	tests := []struct {
		name      string
		err       error
		want      string
		wantIs    []error
		wantError string
	}{
		{name: "token", err: authz.RefuseWith(authz.ErrToken, tokenErr), want: "token: malformed",
			wantIs: []error{authz.ErrToken, token.ErrInvalid, token.ErrMalformed}},
		{name: "caller by token", err: authz.RefuseWith(authz.ErrCaller, tokenErr), want: "caller: malformed",
			wantIs: []error{authz.ErrCaller, token.ErrMalformed}},
		{name: "caller", err: authz.Refusef(authz.ErrCaller, "no %s", "certificate"), want: "caller: no certificate",
			wantIs: []error{authz.ErrCaller}, wantError: "caller rejected: no certificate"},
		{name: "invalid request", err: authz.Refusef(authz.ErrInvalidRequest, "bad path"), want: "invalid_request: bad path",
			wantIs: []error{authz.ErrInvalidRequest}},
		{name: "not ready", err: authz.Refusef(authz.ErrNotReady, "no policy loaded"), want: "not_ready: no policy loaded",
			wantIs: []error{authz.ErrNotReady}, wantError: "no policy loaded"},
		{name: "policy with a cause", err: &authz.Refusal{Category: authz.ErrPolicy, Detail: "evaluation timed out", Cause: context.DeadlineExceeded},
			want: "policy_error: evaluation timed out", wantIs: []error{authz.ErrPolicy, context.DeadlineExceeded},
			wantError: "policy evaluation failed: evaluation timed out (context deadline exceeded)"},
		{name: "an error nobody categorised", err: errors.New("boom"), want: "policy_error: boom"},
		{name: "zero Refusal", err: &authz.Refusal{}, want: "policy_error: policy evaluation failed",
			wantIs: []error{authz.ErrPolicy}, wantError: "policy evaluation failed"},
		{name: "no category", err: &authz.Refusal{Detail: "odd"}, want: "policy_error: odd",
			wantIs: []error{authz.ErrPolicy}, wantError: "policy evaluation failed: odd"},
		{name: "refused with no cause", err: authz.RefuseWith(authz.ErrToken, nil), want: "token: token rejected",
			wantIs: []error{authz.ErrToken}, wantError: "token rejected"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := authz.ReasonFor(tc.err); got != tc.want {
				t.Errorf("ReasonFor = %q, want %q", got, tc.want)
			}
			for _, target := range tc.wantIs {
				if !errors.Is(tc.err, target) {
					t.Errorf("errors.Is(%v, %v) = false", tc.err, target)
				}
			}
			if tc.wantError != "" && tc.err.Error() != tc.wantError {
				t.Errorf("Error() = %q, want %q", tc.err.Error(), tc.wantError)
			}
			d := authz.Deny(tc.err)
			if d.Allow || d.ID == "" || len(d.Reasons) != 1 || d.Reasons[0] != tc.want {
				t.Errorf("Deny = %+v", d)
			}
		})
	}
}

// TestNoErrorNoRefusalReason: ReasonFor(nil) is "" (a policy's deny has
// its own reasons), and Deny(nil) still denies, with a reason.
func TestNoErrorNoRefusalReason(t *testing.T) {
	if got := authz.ReasonFor(nil); got != "" {
		t.Errorf("ReasonFor(nil) = %q, want \"\"", got)
	}
	d := authz.Deny(nil)
	if diff := cmp.Diff([]string{"denied"}, d.Reasons); d.Allow || d.ID == "" || diff != "" {
		t.Errorf("Deny(nil) = %+v, reasons (-want +got):\n%s", d, diff)
	}
}

// TestDecideErrorsAreRefusals: whatever goes wrong, Decide returns a
// *Refusal whose reason is the decision's reason.
// TestMethods: a method is an upper-case HTTP token, taken as it is; any
// other is refused, on every path (no name, a name beside it, a decision
// the cache could answer), never upper-cased into one a policy grants.
func TestMethods(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "r1", `package authz
allow if input.action.method == "GET"
reasons contains input.action.method if input.action.method
`))
	for _, tc := range []struct {
		method string
		ok     bool
	}{
		{"GET", true}, {"PATCH", true}, {"M-SEARCH", true}, {"BREW_2", true},
		{"get", false}, {"Get", false}, {"GET /admin", false}, {"GET\n", false}, {"GÉT", false}, {"GET,POST", false},
	} {
		for _, act := range []authz.Action{{Method: tc.method, Path: "/orders"}, {Name: "orders:read", Method: tc.method}} {
			for range 2 { // the second may be a cache hit
				d, err := e.Decide(t.Context(), authz.Request{Action: act})
				switch {
				case tc.ok && err != nil:
					t.Errorf("%+v: %v", act, err)
				case tc.ok && !slices.Equal(d.Reasons, []string{tc.method}):
					t.Errorf("%+v: reasons %q, want the method as given", act, d.Reasons)
				case !tc.ok && (!errors.Is(err, authz.ErrInvalidRequest) || d.Allow):
					t.Errorf("%+v: allow %v, err %v; want an invalid request", act, d.Allow, err)
				}
			}
		}
	}
}

func TestDecideErrorsAreRefusals(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, authztest.Policy(t, "r", allowAll))
	notReady, _ := authz.New(authz.Options{})
	for _, tc := range []struct {
		e   *authz.Engine
		req authz.Request
	}{
		{e, authz.Request{Token: "x", Action: authz.Action{Name: "a"}}},
		{e, authz.Request{Caller: authz.Caller{Token: token.Raw(is.Mint(t, nil))}, Action: authz.Action{Name: "a"}}},
		{e, authz.Request{}},
		{e, authz.Request{Action: authz.Action{Method: "GET", Path: "/a;b"}}},
		{notReady, authz.Request{Action: authz.Action{Name: "a"}}},
	} {
		d, err := tc.e.Decide(t.Context(), tc.req)
		var r *authz.Refusal
		if !errors.As(err, &r) || d.Allow || len(d.Reasons) != 1 || d.Reasons[0] != r.Reason() {
			t.Errorf("Decide(%+v) = %+v, %v; want a *Refusal whose reason the decision carries", tc.req, d, err)
		}
	}
}

// TestDecisionJSON pins the one decision encoder to encoding/json's view of
// the same fields: what MarshalJSON (the middleware, `verdict decide`) and
// the server (AppendJSON) write is the same JSON.
func TestDecisionJSON(t *testing.T) {
	type plain struct {
		ID       string            `json:"decision_id"`
		Allow    bool              `json:"allow"`
		Reasons  []string          `json:"reasons"`
		Headers  map[string]string `json:"headers,omitempty"`
		Revision string            `json:"revision,omitempty"`
	}
	for _, d := range []authz.Decision{
		{ID: "A", Allow: true, Reasons: []string{"ok", "q\"uote\n"}, Headers: map[string]string{"x-b": "2", "x-a": "1\u2028"}, Revision: "r1"},
		{ID: "B", Reasons: []string{}},
		{ID: "C", Reasons: []string{"no"}, Headers: map[string]string{"x-dropped": "on deny"}},
	} {
		got, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		p := plain{ID: d.ID, Allow: d.Allow, Reasons: d.Reasons, Revision: d.Revision}
		if d.Allow {
			p.Headers = d.Headers
		}
		want, _ := json.Marshal(p)
		var g, w any
		_ = json.Unmarshal(got, &g)
		_ = json.Unmarshal(want, &w)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("decision %s (-encoding/json +AppendJSON):\n%s", d.ID, diff)
		}
		if string(d.AppendJSON(nil, true)) != string(got) {
			t.Errorf("MarshalJSON and AppendJSON differ")
		}
	}
}

func TestRequestIDAndWWWAuthenticate(t *testing.T) {
	for id, want := range map[string]string{
		"req-1": "req-1", "": "", "has space": "", "ctl\x01": "", string(make([]byte, 129)): "",
		"x" + string(make([]byte, 0)) + "y": "xy",
	} {
		if got := authz.RequestIDFromHeader(http.Header{"X-Request-Id": {id}}); got != want {
			t.Errorf("RequestIDFromHeader(%q) = %q, want %q", id, got, want)
		}
	}
	if got := authz.WWWAuthenticate(authz.Refusef(authz.ErrToken, "expired")); got != `Bearer error="invalid_token"` {
		t.Errorf("token refused: %q", got)
	}
	if got := authz.WWWAuthenticate(nil); got != "Bearer" {
		t.Errorf("no token: %q", got)
	}
}
