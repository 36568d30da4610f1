package authz_test

import (
	"context"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

// TestExplain: an explanation names the rules that produced the decision
// with their file:row and values, in the order they held, including the
// else branch that fired; without Explain there is none.
func TestExplain(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e := newEngine(t, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}}, mustDefaultPolicies())
	viewer := token.Raw(is.Mint(t, map[string]any{"roles": []string{"viewer"}}))
	for _, tc := range []struct {
		action    string
		wantAllow bool
		want      []string // steps that must appear, in this order
	}{
		{"orders:read", true, []string{
			`authz/action.rego:9: authz.action = "orders:read"`,
			`authz/rbac.rego:39: authz.role_outcome = {"allow": true, "reason": "role viewer grants orders:read"}`,
			`authz/authz.rego:59: authz.outcome (else) = {"allow": true, "reason": "role viewer grants orders:read"}`,
			`authz/authz.rego:31: authz.allow = true`,
		}},
		{"orders:delete", false, []string{
			`authz/authz.rego:63: authz.outcome (else) = {"allow": false, "reason": "no role grants orders:delete"}`,
			`authz/authz.rego:31: authz.allow = false`,
			`authz/authz.rego:33: authz.reasons = ["no role grants orders:delete"]`,
		}},
	} {
		t.Run(tc.action, func(t *testing.T) {
			for range 2 { // the second is a cache hit without Explain: explain still evaluates
				d, err := e.Decide(t.Context(), authz.Request{Token: viewer, Action: authz.Action{Name: tc.action}, Explain: true})
				if err != nil || d.Allow != tc.wantAllow {
					t.Fatalf("Decide: %+v, %v", d, err)
				}
				var got []string
				for _, s := range d.Explanation {
					got = append(got, s.String())
				}
				i := 0
				for _, s := range got {
					if i < len(tc.want) && s == tc.want[i] {
						i++
					}
				}
				if i < len(tc.want) {
					t.Errorf("explanation lacks %q (in order) in:\n%s", tc.want[i], strings.Join(got, "\n"))
				}
			}
			d, _ := e.Decide(t.Context(), authz.Request{Token: viewer, Action: authz.Action{Name: tc.action}})
			if d.Explanation != nil {
				t.Error("an explanation nobody asked for")
			}
		})
	}
}

// TestPrint: print() output reaches the engine's Print function, with the
// call's location.
func TestPrint(t *testing.T) {
	var got []string
	e := newEngine(t, authz.Options{Print: func(_ context.Context, loc, msg string) { got = append(got, loc+": "+msg) }},
		authztest.Policy(t, "p", "package authz\n\nallow if {\n\tprint(\"asked for\", input.action.name)\n\tinput.action.name == \"x\"\n}\n"))
	if _, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}, Explain: true}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "policy.rego:4: asked for x" {
		t.Errorf("printed %q", got)
	}
}

// BenchmarkExplain compares a decision evaluated with and without an
// explanation (the decision cache off in both).
func BenchmarkExplain(b *testing.B) {
	is := authztest.NewIssuer(b, "ES256")
	e := newEngine(b, authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}, DecisionCacheSize: -1}, mustDefaultPolicies())
	viewer := token.Raw(is.Mint(b, map[string]any{"roles": []string{"viewer"}}))
	for _, explain := range []bool{false, true} {
		name := "off"
		if explain {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			req := authz.Request{Token: viewer, Action: authz.Action{Name: "orders:read"}, Explain: explain}
			b.ReportAllocs()
			for b.Loop() {
				if d, err := e.Decide(context.Background(), req); err != nil || !d.Allow {
					b.Fatal(d, err)
				}
			}
		})
	}
}
