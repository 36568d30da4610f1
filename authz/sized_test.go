package authz_test

import (
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestSizedByInput: a call that lets a request size a built-in's result is
// found however the value reaches it (directly, through variables, another
// rule, a comprehension, a function's argument), at its line; constants,
// data, a value compared with a number first, and tests are not.
func TestSizedByInput(t *testing.T) {
	const head = "package authz\n\ndefault allow := false\n\n"
	for _, tc := range []struct {
		name, rego string
		lines      []int // of the calls found
	}{
		{"directly", "allow if count(numbers.range(1, input.resource.n)) > 0\n", []int{5}},
		{"through a variable", "allow if {\n\tn := input.resource.n\n\tcount(numbers.range(1, n)) > 0\n}\n", []int{7}},
		{"through another rule", "n := input.resource.n + 1\n\nallow if count(numbers.range(1, n)) > 0\n", []int{7}},
		{"iterated", "allow if {\n\tsome x in input.resource.xs\n\tnet.cidr_expand(x)\n}\n", []int{7}},
		{"in a comprehension", "allow if count([y | some x in input.resource.xs; y := numbers.range(1, x)]) > 0\n", []int{5}},
		{"a function's argument", "f(n) := numbers.range(1, n)\n\nallow if count(f(3)) > 0\n", []int{5}},
		{"replace's pattern", "allow if replace(\"abc\", input.resource.p, \"x\") == \"x\"\n", []int{5}},
		{"replace's subject only", "allow if replace(input.resource.p, \"/\", \"\") == \"x\"\n", nil},
		{"replace's replacement in the policy's text", "allow if replace(\"user:${id}\", \"${id}\", input.resource.id) == \"x\"\n", nil},
		{"replace's replacement and subject", "allow if replace(input.resource.s, \"a\", input.resource.t) == \"x\"\n", []int{5}},
		{"constants", "allow if count(numbers.range(1, 10)) > 0\n", nil},
		{"data", "allow if count(numbers.range(1, count(data.roles))) > 0\n", nil},
		{"bounded first", "allow if {\n\tn := input.resource.n\n\tn <= 100\n\tcount(numbers.range(1, n)) > 0\n}\n", nil},
		{"bounded first, by reference", "allow if {\n\t100 > input.resource.n\n\tcount(numbers.range(1, input.resource.n)) > 0\n}\n", nil},
		{"another value bounded", "allow if {\n\tinput.resource.m < 100\n\tcount(numbers.range(1, input.resource.n)) > 0\n}\n", []int{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap := authztest.Snapshot(t, tc.name, map[string]string{
				"authz/p.rego":      head + tc.rego,
				"authz/p_test.rego": "package authz_test\n\ntest_range if count(numbers.range(1, input.n)) == 3 with input as {\"n\": 3}\n",
			}, nil)
			c, err := authz.Compile(snap, authz.CompileOptions{IncludeTests: true})
			if err != nil {
				t.Fatal(err)
			}
			found := authz.SizedByInput(c)
			var lines []int
			for _, p := range found {
				if p.File != "authz/p.rego" || p.Code != authz.CodeSizedByInput || !strings.Contains(p.Message, "limits.eval_timeout") {
					t.Errorf("problem %+v", p)
				}
				lines = append(lines, p.Line)
			}
			if len(lines) != len(tc.lines) || len(lines) > 0 && lines[0] != tc.lines[0] {
				t.Errorf("found at lines %v, want %v", lines, tc.lines)
			}
		})
	}
}
