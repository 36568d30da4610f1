package authz_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// TestContractTypesAtLoad: a rule whose type cannot be the contract's is a
// load error at that rule's file:row:col, and the working policy keeps
// serving; rules whose types fit (or are unknown until evaluation) load.
func TestContractTypesAtLoad(t *testing.T) {
	tests := []struct {
		name    string
		rego    string
		want    bundles.Problem // File, Line, Col; Message is a substring
		wantErr bool
	}{
		{name: "headers value a number", wantErr: true,
			rego: "allow := true\n\nheaders := {\"x-n\": 1}\n",
			want: bundles.Problem{File: "policy.rego", Line: 5, Col: 1, Message: "data.authz.headers has type object<x-n: number>"}},
		{name: "headers a string", wantErr: true,
			rego: "allow := true\n\nheaders := \"x\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 5, Col: 1, Message: "must be an object of strings"}},
		{name: "headers key by ref head a number", wantErr: true,
			rego: "allow := true\n\nheaders[\"x-a\"] := \"a\"\n\nheaders[\"x-b\"] := 2\n",
			want: bundles.Problem{File: "policy.rego", Line: 7, Col: 1, Message: "data.authz.headers"}},
		{name: "reasons a string", wantErr: true,
			rego: "allow := true\n\nreasons := \"no\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 5, Col: 1, Message: "must be a set or array of strings"}},
		{name: "one partial reason a number", wantErr: true,
			rego: "allow := true\n\nreasons contains \"ok\" if input.action.name == \"a\"\n\nreasons contains 7 if input.action.name == \"b\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 7, Col: 1, Message: "data.authz.reasons has type set[number]"}},
		{name: "allow a string", wantErr: true,
			rego: "allow := \"yes\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 3, Col: 1, Message: "data.authz.allow has type string but must be boolean"}},
		{name: "one allow rule of two a string", wantErr: true,
			rego: "allow if input.action.name == \"a\"\n\nallow := \"yes\" if input.action.name == \"b\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 5, Col: 1, Message: "data.authz.allow has type string"}},
		{name: "else branch a string", wantErr: true,
			rego: "allow if input.action.name == \"a\"\n\nelse := \"no\"\n",
			want: bundles.Problem{File: "policy.rego", Line: 3, Col: 1, Message: "data.authz.allow"}},
		{name: "no allow rule", wantErr: true,
			rego: "deny := true\n",
			want: bundles.Problem{File: "policy.rego", Line: 1, Message: "defines no allow rule"}},

		{name: "allow from a comparison", rego: "allow := input.action.name == \"a\"\n"},
		{name: "allow else false", rego: "allow if input.action.name == \"a\"\n\nelse := false\n"},
		{name: "reasons from sprintf", rego: "default allow := false\n\nreasons contains sprintf(\"no %s\", [input.action.name]) if not allow\n"},
		{name: "reasons default empty array", rego: "allow := true\n\ndefault reasons := []\n"},
		{name: "headers from claims (unknown type)", rego: "allow := true\n\nheaders := {\"x-user\": input.subject.claims.email}\n"},
		{name: "headers by key from input", rego: "allow := true\n\nheaders[k] := v if some k, v in input.resource.h\n"},
		{name: "headers from a string id", rego: "allow := true\n\nheaders[\"x-user\"] := input.subject.id if input.subject.authenticated\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, authz.Options{}, authztest.Policy(t, "good", allowAll))
			err := e.Load(t.Context(), authztest.Policy(t, "candidate", "package authz\n\n"+tc.rego))
			if !tc.wantErr {
				if err != nil {
					t.Fatalf("Load: %v, want the policy to load", err)
				}
				return
			}
			var ce *authz.CompileError
			if !errors.Is(err, authz.ErrCompile) || !errors.As(err, &ce) {
				t.Fatalf("Load: %v, want a *CompileError wrapping ErrCompile", err)
			}
			if len(ce.Problems) != 1 {
				t.Fatalf("problems = %v, want exactly one", ce.Problems)
			}
			got := ce.Problems[0]
			if got.File != tc.want.File || got.Line != tc.want.Line || got.Col != tc.want.Col ||
				!strings.Contains(got.Message, tc.want.Message) {
				t.Errorf("problem = %s\nwant %s:%d:%d: …%s…", got, tc.want.File, tc.want.Line, tc.want.Col, tc.want.Message)
			}
			if st := e.Status(); st.Revision != "good" || st.LastErrorRevision != "candidate" {
				t.Errorf("status revision %q (last error %q), want the working policy to keep serving", st.Revision, st.LastErrorRevision)
			}
			if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "x"}}); err != nil || !d.Allow {
				t.Errorf("after a refused load: %+v, %v; want the working allow-all policy", d, err)
			}
			// verdict check runs the same checks.
			if _, err := authz.Compile(authztest.Policy(t, "candidate", "package authz\n\n"+tc.rego), authz.CompileOptions{}); !errors.As(err, &ce) {
				t.Errorf("Compile: %v, want the same *CompileError", err)
			}
		})
	}
}

// TestRequireTests: with RequireTests, a snapshot whose own tests fail (or
// that has none) never replaces the working one, and the failing test is
// named at its file:row; a snapshot whose tests pass loads.
func TestRequireTests(t *testing.T) {
	policy := "package authz\n\nallow if input.action.name == \"read\"\n"
	tests := []struct {
		name     string
		test     string // policy_test.rego; "" for none
		want     string // problem substring; "" when the snapshot must load
		wantLine int
	}{
		{name: "passing tests load",
			test: "package authz_test\n\nimport data.authz\n\ntest_read if authz.allow with input as {\"action\": {\"name\": \"read\"}}\n"},
		{name: "a failing test refuses the snapshot",
			test: "package authz_test\n\nimport data.authz\n\ntest_read if authz.allow with input as {\"action\": {\"name\": \"read\"}}\n\ntest_write if authz.allow with input as {\"action\": {\"name\": \"write\"}}\n",
			want: "test data.authz_test.test_write failed", wantLine: 7},
		{name: "no tests refuses the snapshot", want: "has no tests"},
		{name: "only skipped tests refuse the snapshot", want: "has no tests that run",
			test: "package authz_test\n\nimport data.authz\n\ntodo_test_write if not authz.allow with input as {\"action\": {\"name\": \"write\"}}\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			good := authztest.Snapshot(t, "good", map[string]string{"authz/policy.rego": allowAll,
				"authz/policy_test.rego": "package authz_test\n\ntest_all if data.authz.allow\n"}, nil)
			e := newEngine(t, authz.Options{}, good)
			e2 := newEngine(t, authz.Options{RequireTests: true}, good)
			modules := map[string]string{"authz/policy.rego": policy}
			if tc.test != "" {
				modules["authz/policy_test.rego"] = tc.test
			}
			err := e2.Load(t.Context(), authztest.Snapshot(t, "candidate", modules, nil))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if st := e2.Status(); st.Revision != "candidate" {
					t.Errorf("revision %q, want candidate", st.Revision)
				}
				return
			}
			var ce *authz.CompileError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want a compile error containing %q", err, tc.want)
			}
			if tc.wantLine > 0 && (ce.Problems[0].File != "authz/policy_test.rego" || ce.Problems[0].Line != tc.wantLine) {
				t.Errorf("problem at %s:%d, want authz/policy_test.rego:%d", ce.Problems[0].File, ce.Problems[0].Line, tc.wantLine)
			}
			if st := e2.Status(); st.Revision != "good" {
				t.Errorf("revision %q after a refused snapshot, want good", st.Revision)
			}
			// Without RequireTests the same snapshot loads.
			if err := e.Load(t.Context(), authztest.Snapshot(t, "candidate", modules, nil)); err != nil {
				t.Errorf("Load without RequireTests: %v", err)
			}
		})
	}
}

// TestContractTypesOfData: allow, reasons and headers given as data at the
// entrypoint's path (not as rules) are checked too, so the data cannot
// smuggle in what the rules could not.
func TestContractTypesOfData(t *testing.T) {
	for _, tc := range []struct {
		name string
		data map[string]any
		want string // "" when it must load
	}{
		{"headers of numbers", map[string]any{"authz": map[string]any{"headers": map[string]any{"x-n": 1}}}, "data.authz.headers in the policy set's data has type object<x-n: number>"},
		{"reasons a string", map[string]any{"authz": map[string]any{"reasons": "no"}}, "data.authz.reasons in the policy set's data has type string"},
		{"headers of strings", map[string]any{"authz": map[string]any{"headers": map[string]any{"x-a": "b"}}}, ""},
		{"other data", map[string]any{"authz": map[string]any{"roles": []any{1}}, "headers": 1}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, authz.Options{}, authztest.Policy(t, "good", allowAll))
			err := e.Load(t.Context(), authztest.Snapshot(t, "candidate", map[string]string{"policy.rego": "package authz\n\nallow := true\n"}, tc.data))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if !errors.Is(err, authz.ErrCompile) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want a compile error containing %q", err, tc.want)
			}
		})
	}
}
