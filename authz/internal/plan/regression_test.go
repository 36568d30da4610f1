package plan_test

import "testing"

// TestRegressions are policies on which the evaluators once disagreed,
// found by FuzzPolicy or by review, with the reason.
func TestRegressions(t *testing.T) {
	tests := []struct {
		name, module string
	}{
		{
			// The planner looks o[input.a] up by path (CallDynamicStmt) and
			// puts the rest of the expression in a block of its own; its
			// Wasm compiler reads the end of that block in a negation as
			// the negated expression's success.
			name: "negated lookup by path of a false value",
			module: `package p

o["a"] := false

r if not o[input.a]
`,
		},
		{
			name: "negated lookup by path, then a missing key",
			module: `package p

o["a"] := {"x": 1}

r if not o[input.a].y

s if not o[input.a].x
`,
		},
		{
			name: "every over a lookup by path of a non-collection",
			module: `package p

o["a"] := 1

o["b"] := [1, 2]

r if every x in o[input.a] { x > 0 }
`,
		},
		{
			// An object literal whose keys turn out equal at evaluation
			// (found by review): the planner orders a literal's keys its
			// own way, and topdown keeps the first or the last value
			// depending on how the keys are written and how the object is
			// read. The compiled evaluator refuses such an object, so
			// topdown answers.
			name: "object literal with a key given twice at evaluation",
			module: `package p

r1 := {input.a: 1, "a": 2}[input.a]

r2 if { {input.a: 1, "a": 2}[input.a] == 1 }

r3 := x if { x := {input.a: 1, "a": 2} }

r4 := {"a": {"v": 1}, input.a: {"v": 2}}[input.a].v
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !checkPolicy(t, tc.module) {
				t.Fatal("does not compile")
			}
		})
	}
}
