package plan_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

// TestPrepareRefuses checks that what the compiled evaluator does not do
// the way topdown does is refused when the query is prepared, naming the
// reason, so that the caller keeps topdown for it.
func TestPrepareRefuses(t *testing.T) {
	tests := []struct {
		name   string
		module string
		data   map[string]any
		want   string
	}{
		{
			name: "planner refuses a rule reading its own prefix",
			module: `package authz
allow := true
p[x] := 1 if { x := "a" }
p.b := y if { y := p.a + 1 }
reasons := {sprintf("%v", [p])}`,
			want: "rules sharing that path prefix are planned as a single function",
		},
		{
			name: "comprehension topdown evaluates ahead",
			module: `package authz
allow if {
	t := input.action.name
	names := [n | some u in data.users; u.team == t; n := upper(u.name)]
	count(names) > 0
}`,
			data: map[string]any{"users": []any{map[string]any{"team": "a", "name": "x"}}},
			want: "comprehension that topdown indexes",
		},
		{
			name:   "data.system",
			module: "package authz\nallow := true",
			data:   map[string]any{"system": map[string]any{"x": 1}},
			want:   "data.system",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := inlineSet(t, tc.module)
			var data ast.Value
			if tc.data != nil {
				data = ast.MustInterfaceToValue(tc.data)
			}
			_, err := plan.Prepare(t.Context(), plan.Options{Compiler: ps.compiler, Query: ast.MustParseBody(decisionQuery), Data: data})
			if !errors.Is(err, plan.ErrUnsupported) {
				t.Fatalf("want an error wrapping ErrUnsupported, got %v", err)
			}
			var ue *plan.UnsupportedError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an *UnsupportedError mentioning %q, got %v", tc.want, err)
			}
		})
	}
}

// TestPrepareQueryErrors checks that a query that does not compile is an
// ordinary error, not a refusal: the caller's topdown would fail on it too.
func TestPrepareQueryErrors(t *testing.T) {
	ps := inlineSet(t, "package authz\nallow := true")
	_, err := plan.Prepare(t.Context(), plan.Options{Compiler: ps.compiler, Query: ast.MustParseBody("x = data.authz.nope(1)")})
	if err == nil || errors.Is(err, plan.ErrUnsupported) {
		t.Fatalf("want a compile error, got %v", err)
	}
}
