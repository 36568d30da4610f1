package authz_test

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// TestRuleAtDataPathRefused: a rule whose path the data already holds a
// value at (data.json's {"allow": true} beside package authz's allow), or
// below a value that is not an object, is a compile problem, as OPA makes
// it; the rule used to hide the value silently. Data beside rules, at
// other keys of the same package, is fine.
func TestRuleAtDataPathRefused(t *testing.T) {
	policy := map[string]string{"authz.rego": "package authz\n\ndefault allow := false\n\nallow if data.roles.extra\n",
		"roles.rego": "package roles\n\nextra := true\n"}
	for name, tc := range map[string]struct {
		data     map[string]any
		conflict string // the path named, or "" for none
	}{
		"value at a rule":     {map[string]any{"authz": map[string]any{"allow": true}}, "authz/allow"},
		"array above a rule":  {map[string]any{"roles": []any{"admin"}}, "roles/extra"},
		"string above a rule": {map[string]any{"roles": "admin"}, "roles/extra"},
		"data beside rules":   {map[string]any{"authz": map[string]any{"limit": 3}, "roles": map[string]any{"admin": true}}, ""},
		// An embedder's data of other Go types is an object all the same.
		"typed map beside rules": {map[string]any{"authz": map[string]string{"tenant": "acme"}}, ""},
		"struct beside rules": {map[string]any{"authz": struct {
			Tenant string `json:"tenant"`
		}{"acme"}}, ""},
		"typed map at a rule":    {map[string]any{"authz": map[string]bool{"allow": true}}, "authz/allow"},
		"data elsewhere":         {map[string]any{"tenants": []any{"acme"}}, ""},
		"a value at the package": {map[string]any{"authz": 1}, "authz/allow"},
	} {
		t.Run(name, func(t *testing.T) {
			snap := authztest.Snapshot(t, name, policy, tc.data)
			e, err := authz.New(authz.Options{})
			if err != nil {
				t.Fatal(err)
			}
			err = e.Load(t.Context(), snap)
			if tc.conflict == "" {
				if err != nil {
					t.Fatalf("Load: %v, want it to load", err)
				}
				return
			}
			var ce *authz.CompileError
			if !errors.As(err, &ce) || len(ce.Problems) == 0 || !strings.Contains(ce.Problems[0].Message, "conflicting rule for data path "+tc.conflict) {
				t.Fatalf("Load: %v, want a conflict at %s", err, tc.conflict)
			}
			if _, err := authz.Compile(snap, authz.CompileOptions{}); err == nil {
				t.Errorf("Compile (verdict check) accepts what Load refuses")
			}
		})
	}
}

// TestCompilerPanicIsAProblem: OPA's compiler panics on some policy sets
// (a rule reference with a number key, q[1], beside a package below it);
// Load, Compile and RunTests report a problem instead, and the engine
// keeps serving what it served. Before, a saved file ended the server.
func TestCompilerPanicIsAProblem(t *testing.T) {
	good := authztest.Policy(t, "good", "package authz\n\nallow := true\n")
	bad := authztest.Snapshot(t, "panics", map[string]string{
		"authz/a.rego":   "package authz\n\nq[1] := 1\n\nallow := true\n",
		"authz/q/z.rego": "package authz.q.z\n\nx := 1\n",
	}, nil)
	e := newEngine(t, authz.Options{}, good)
	var ce *authz.CompileError
	if err := e.Load(t.Context(), bad); !errors.As(err, &ce) || !errors.Is(err, authz.ErrCompile) || !strings.Contains(ce.Problems[0].Message, "panic") {
		t.Fatalf("Load: %v, want a compile problem naming the panic", err)
	}
	if st := e.Status(); st.Revision != good.Revision {
		t.Errorf("serving %q, want the good policy still", st.Revision)
	}
	if _, err := authz.Compile(bad, authz.CompileOptions{}); !errors.As(err, &ce) {
		t.Errorf("Compile: %v, want a compile problem", err)
	}
	if _, err := authz.RunTests(t.Context(), bad, authz.TestOptions{}); !errors.As(err, &ce) {
		t.Errorf("RunTests: %v, want a compile problem", err)
	}
}

// TestPanickingTestIsAProblem: a test whose built-in function panics
// (bits.lsh by a huge count) is a problem at the test, for RunTests and
// for Load under RequireTests, which keeps the last good policy. OPA's
// tester runs tests on goroutines of its own, where the panic ended the
// process: a saved test file stopped the server.
func TestPanickingTestIsAProblem(t *testing.T) {
	good := authztest.Snapshot(t, "good", map[string]string{
		"authz/p.rego":      "package authz\n\nallow := true\n",
		"authz/p_test.rego": "package authz_test\n\ntest_ok if data.authz.allow\n",
	}, nil)
	bad := authztest.Snapshot(t, "panics", map[string]string{
		"authz/p.rego":      "package authz\n\nallow := true\n",
		"authz/p_test.rego": "package authz_test\n\ntest_ok if data.authz.allow\n\ntest_shift if bits.lsh(1, 1000000000000000000) > 0\n",
	}, nil)
	var ce *authz.CompileError
	_, err := authz.RunTests(t.Context(), bad, authz.TestOptions{})
	if !errors.As(err, &ce) || ce.Problems[0].File != "authz/p_test.rego" || ce.Problems[0].Line != 5 || !strings.Contains(ce.Problems[0].Message, "panicked") {
		t.Fatalf("RunTests: %v, want a problem at authz/p_test.rego:5", err)
	}
	if _, err := authz.RunTests(t.Context(), bad, authz.TestOptions{Run: "test_ok"}); err != nil {
		t.Errorf("RunTests of the other test alone: %v", err)
	}
	e := newEngine(t, authz.Options{RequireTests: true}, good)
	if err := e.Load(t.Context(), bad); !errors.As(err, &ce) {
		t.Fatalf("Load under RequireTests: %v, want a problem", err)
	}
	if st := e.Status(); st.Revision != good.Revision {
		t.Errorf("serving %q, want the good policy still", st.Revision)
	}
}

// TestPanickingTestsFoundAsTheTesterFindsThem: the tests run ahead to find
// a panic are those OPA's tester runs: a second definition of a name, a
// test_ rule outside a _test.rego file, a reference head with test_ past
// its first part, a test after an offline JSON Schema check, chosen by
// --run as the tester chooses. Each had been missed, and ended the process.
func TestPanickingTestsFoundAsTheTesterFindsThem(t *testing.T) {
	const shift = "bits.lsh(1, 1000000000000000000) > 0"
	for _, tc := range []struct {
		name  string
		files map[string]string
		run   string
	}{
		{"a name twice", map[string]string{"authz/p_test.rego": "package authz_test\n\ntest_ok if data.authz.allow\n\ntest_ok if " + shift + "\n"}, ""},
		{"outside a test file", map[string]string{"authz/more.rego": "package authz\n\ntest_y if " + shift + "\n"}, ""},
		{"a reference head", map[string]string{"authz/p_test.rego": "package authz_test\n\nsuite.test_z if " + shift + "\n"}, ""},
		{"after a schema check", map[string]string{"authz/p_test.rego": "package authz_test\n\ntest_s if {\n\t[ok, _] := json.match_schema({}, {\"type\": \"object\"})\n\tok\n\t" + shift + "\n}\n"}, ""},
		{"chosen by --run", map[string]string{"authz/p_test.rego": "package authz_test\n\ntest_x.y if " + shift + "\n"}, "test_x$"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"authz/p.rego": "package authz\n\nallow := true\n"}
			maps.Copy(files, tc.files)
			var ce *authz.CompileError
			if _, err := authz.RunTests(t.Context(), authztest.Snapshot(t, tc.name, files, nil), authz.TestOptions{Run: tc.run}); !errors.As(err, &ce) ||
				!strings.Contains(ce.Problems[0].Message, "panicked") {
				t.Fatalf("RunTests: %v, want a problem naming the panic", err)
			}
		})
	}
	// A filter the tester matches no test with runs none ahead either.
	snap := authztest.Snapshot(t, "filtered", map[string]string{"authz/p.rego": "package authz\n\nallow := true\n",
		"authz/p_test.rego": "package authz_test\n\ntest_x.y if " + shift + "\n"}, nil)
	if run, err := authz.RunTests(t.Context(), snap, authz.TestOptions{Run: `x\.y$`}); err != nil || len(run.Results) != 0 {
		t.Errorf("RunTests with a filter matching no test: %v, %v", run, err)
	}
}

// TestProblemsInThePolicyOnly: a recursion through allow is reported at
// the policy's rule, not again along the engine's own entry module, which
// the author never wrote (verdict:verdict_entrypoint:3:1 and :7:1).
func TestProblemsInThePolicyOnly(t *testing.T) {
	snap := authztest.Policy(t, "recursive", "package authz\n\nallow if object.get(data, [\"authz\", \"x\"], false)\n")
	_, err := authz.Compile(snap, authz.CompileOptions{})
	var ce *authz.CompileError
	if !errors.As(err, &ce) || len(ce.Problems) == 0 {
		t.Fatalf("Compile: %v, want a recursion problem", err)
	}
	for _, p := range ce.Problems {
		if strings.HasPrefix(p.File, "verdict:") {
			t.Errorf("a problem in the engine's own module: %v", p)
		}
	}
}

// TestEntryModuleProblemsKeptWhenTheirOwn: a problem that shows only in the
// engine's entry module (allow written as a function) stays beside an
// unrelated problem of the policy's; only restated recursions are left out.
func TestEntryModuleProblemsKeptWhenTheirOwn(t *testing.T) {
	snap := authztest.Policy(t, "allowfunc", "package authz\n\nallow(x) := true\n\ny if count(1) > 0\n")
	_, err := authz.Compile(snap, authz.CompileOptions{})
	var ce *authz.CompileError
	if !errors.As(err, &ce) || !slices.ContainsFunc(ce.Problems, func(p bundles.Problem) bool { return strings.Contains(p.Message, "used as reference, not called") }) {
		t.Errorf("Compile: %v, want the entry module's problem with allow kept", err)
	}
}
