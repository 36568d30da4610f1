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

// TestPrepareLooksAtWhatTheQueryReaches: what Prepare refuses in a rule
// counts only where the query can reach that rule. A library module
// beside the policy that the decision does not use (here a set literal
// with a reference in it, a number written 1.0, and a function with an
// else whose output a set head binds) leaves the policy to the compiled
// evaluator; reached by a call, a lookup with a variable, a whole read or
// a with's value, it is refused.
func TestPrepareLooksAtWhatTheQueryReaches(t *testing.T) {
	lib := `package lib

roles := {input.role, "guest"}

ratio := 1.0

norm(x) := "b" if { x == "1" } else := x

names contains norm(y) if { some y in input.ys }

g(x) := count(roles)
`
	prepare := func(policy string) error {
		c, err := compileModules(lib + "\n" + policy)
		if err != nil {
			t.Fatalf("compile: %v\n%s", err, policy)
		}
		_, err = plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.allow")})
		return err
	}
	if err := prepare("package p\n\nallow if input.user == \"alice\"\n"); err != nil {
		t.Errorf("a library the query does not reach: %v, want the compiled evaluator", err)
	}
	for _, policy := range []string{
		"package p\n\nallow if \"admin\" in data.lib.roles\n",
		"package p\n\nallow if data.lib.ratio == 1\n",
		"package p\n\nallow if not data.lib.names[input.k]\n",
		"package p\n\nallow if data.lib[input.name]\n",
		"package p\n\nallow if { some k, _ in data.lib; k == \"x\" }\n",
		"package p\n\nallow if count([1]) == 1 with count as data.lib.g\n",
	} {
		if err := prepare(policy); !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("Prepare: %v, want a refusal\n%s", err, policy)
		}
	}
	// Under data.system, which OPA's rule tree hides from lookups with a
	// variable at the root and from whole reads.
	for _, policy := range []string{
		"package p\n\nallow if { s := data.system; s.lib.ratio == 1 }\n",
		"package p\n\nallow if data[input.ns].lib.ratio == 1\n",
	} {
		c, err := compileModules("package system.lib\n\nratio := 1.0\n\n" + policy)
		if err != nil {
			t.Fatal(err)
		}
		_, err = plan.Prepare(t.Context(), plan.Options{Compiler: c, Query: ast.MustParseBody("x = data.p.allow")})
		if !errors.Is(err, plan.ErrUnsupported) {
			t.Errorf("Prepare: %v, want a refusal\n%s", err, policy)
		}
	}
}
