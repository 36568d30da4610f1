package plan

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/test/cases"
	"github.com/open-policy-agent/opa/v1/test/cases/testdata"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/types"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/open-policy-agent/opa/v1/version"
)

var update = flag.Bool("update", false, "rewrite testdata/compliance.txt")

// complianceReport is the golden record of how OPA's compliance suite fares
// against the compiled evaluator: every case the evaluator refuses, and
// why. It changes only with -update, so that a change shows in review.
const complianceReport = "testdata/compliance.txt"

// loadCases reads OPA's own compliance cases (the Rego v1 suite that OPA
// runs against topdown and its Wasm compiler) from the OPA module.
func loadCases(t *testing.T) []cases.TestCase {
	t.Helper()
	var all []cases.TestCase
	err := fs.WalkDir(testdata.V1, "v1", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".yaml" {
			return err
		}
		bs, err := fs.ReadFile(testdata.V1, p)
		if err != nil {
			return err
		}
		var set cases.Set
		if err := util.Unmarshal(bs, &set); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		for i := range set.Cases {
			set.Cases[i].Filename = strings.TrimPrefix(p, "v1/")
		}
		all = append(all, set.Cases...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) < 1000 {
		t.Fatalf("found only %d compliance cases", len(all))
	}
	slices.SortFunc(all, func(a, b cases.TestCase) int {
		return strings.Compare(a.Filename+"/"+a.Note, b.Filename+"/"+b.Note)
	})
	return all
}

// TestCompliance runs every case of OPA's compliance suite through the
// compiled evaluator. A case it supports must give OPA's expected answer
// or error; a case it does not support must be refused when it is
// prepared, and is listed in testdata/compliance.txt. Each supported case
// is also evaluated by topdown, in OPA's default mode and with strict
// built-in errors (the engine's), and the two evaluators must agree.
func TestCompliance(t *testing.T) {
	var (
		unsupported []string // refused by Prepare
		refused     []string // refused by Eval, for this case's input
		supported   int
		failed      int
		erred       int // passed by meeting the expected error
	)
	for _, tc := range loadCases(t) {
		name := strings.TrimSuffix(tc.Filename, ".yaml") + "/" + tc.Note
		ok := t.Run(name, func(t *testing.T) {
			if len(tc.Env) > 0 {
				for k, v := range tc.Env {
					t.Setenv(k, v)
				}
			}
			c, query, data, input := complianceSetup(t, tc)
			pl, err := Prepare(t.Context(), Options{Compiler: c, Query: query, Data: data})
			if errors.Is(err, ErrUnsupported) {
				unsupported = append(unsupported, name+": "+err.Error())
				return
			}
			if err != nil {
				t.Fatalf("prepare: %v", err)
			}
			supported++
			rs, err := pl.Eval(t.Context(), input, EvalOptions{StrictBuiltinErrors: tc.StrictError})
			if isRefusal(err) {
				refused = append(refused, name+": "+err.Error())
				return
			}
			checkExpectation(t, tc, bindingsOf(rs), err)
			if err != nil {
				erred++
			}
			// Nothing of one evaluation may leak into the next: shared
			// constants stay unchanged, registers start out empty.
			again, err2 := pl.Eval(t.Context(), input, EvalOptions{StrictBuiltinErrors: tc.StrictError})
			if (err == nil) != (err2 == nil) || !sameResultSets(rs, again) {
				t.Fatalf("second evaluation differs: %v, %v then %v, %v", rs, err, again, err2)
			}

			// The same query through rego, both evaluators, both modes.
			for _, strict := range []bool{false, true} {
				want, wantErr := evalRego(t, c, query, data, input, strict, false)
				got, gotErr := evalRego(t, c, query, data, input, strict, true)
				if isRefusal(gotErr) {
					continue // the caller would evaluate with topdown
				}
				if (wantErr != nil) != (gotErr != nil) {
					t.Fatalf("strict=%v: topdown error %v, compiled error %v", strict, wantErr, gotErr)
				}
				if wantErr != nil {
					if wc, gc := errorCode(wantErr), errorCode(gotErr); wc != gc {
						t.Fatalf("strict=%v: topdown error %v, compiled error %v", strict, wantErr, gotErr)
					}
					continue
				}
				if !sameResults(want, got) {
					t.Fatalf("strict=%v:\ntopdown:  %v\ncompiled: %v", strict, want, got)
				}
			}
		})
		if !ok {
			failed++
		}
	}
	report := fmt.Sprintf("# OPA %s compliance suite (Rego v1) against the compiled evaluator\n"+
		"# cases: %d; prepared: %d, of which %d passed, %d failed, %d refused to evaluate (the caller\n"+
		"# falls back to topdown); refused at prepare time: %d\n"+
		"# %d of the passed cases expect an error and got the same one; Eval reports an evaluation\n"+
		"# error as a refusal too, with the error inside, so that topdown decides such inputs\n",
		opaVersion(), supported+len(unsupported), supported, supported-failed-len(refused), failed,
		len(refused), len(unsupported), erred)
	for _, u := range unsupported {
		report += "prepare: " + u + "\n"
	}
	for _, u := range refused {
		report += "eval:    " + u + "\n"
	}
	t.Log(report)
	if *update {
		if err := os.WriteFile(complianceReport, []byte(report), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	golden, err := os.ReadFile(complianceReport)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(golden) != report {
		t.Errorf("%s is out of date (run with -update and review the diff):\n%s", complianceReport, report)
	}
}

func complianceSetup(t *testing.T, tc cases.TestCase) (*ast.Compiler, ast.Body, ast.Value, ast.Value) {
	t.Helper()
	popts := ast.ParserOptions{RegoVersion: ast.RegoV1}
	if tc.ExperimentalKeywords {
		popts.Capabilities = ast.CapabilitiesForThisVersion(ast.CapabilitiesExperimentalKeywords(true))
	}
	modules := map[string]string{}
	for i, m := range tc.Modules {
		modules[fmt.Sprintf("test-%d.rego", i)] = m
	}
	c, err := ast.CompileModulesWithOpt(modules, ast.CompileOpts{ParserOptions: popts, EnablePrintStatements: true})
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	query, err := ast.ParseBodyWithOpts(tc.Query, popts)
	if err != nil {
		t.Fatalf("query: %v", err)
	}
	var data ast.Value = ast.NewObject()
	if tc.Data != nil {
		data = ast.MustInterfaceToValue(*tc.Data)
	}
	var input ast.Value
	switch {
	case tc.InputTerm != nil:
		input = ast.MustParseTerm(*tc.InputTerm).Value
	case tc.Input != nil:
		input = ast.MustInterfaceToValue(*tc.Input)
	}
	return c, query, data, input
}

// bindingsOf turns results into the form the suite states them in: the
// query's named variables, as JSON values.
func bindingsOf(rs ResultSet) []map[string]any {
	out := make([]map[string]any, 0, len(rs))
	for _, r := range rs {
		m := map[string]any{}
		r.Foreach(func(k, v *ast.Term) {
			name := string(k.Value.(ast.String))
			if strings.HasPrefix(name, "^") {
				return
			}
			j, err := ast.JSON(v.Value)
			if err != nil {
				panic(err)
			}
			m[name] = j
		})
		out = append(out, m)
	}
	return out
}

// checkExpectation compares an outcome with a case's expectation the way
// OPA's topdown test runner does.
func checkExpectation(t *testing.T, tc cases.TestCase, got []map[string]any, err error) {
	t.Helper()
	if tc.WantError != nil {
		if err == nil {
			t.Fatalf("want error containing %q, got %v", *tc.WantError, got)
		}
		if !strings.Contains(err.Error(), *tc.WantError) {
			t.Fatalf("want error containing %q, got %q", *tc.WantError, err)
		}
	}
	if tc.WantErrorCode != nil {
		if code := errorCode(err); code != *tc.WantErrorCode {
			t.Fatalf("want error code %q, got %v (%v)", *tc.WantErrorCode, code, err)
		}
	}
	if err != nil && tc.WantError == nil && tc.WantErrorCode == nil {
		t.Fatalf("unexpected error: %v", err)
	}
	// Topdown may report the solutions it found before an error along
	// with it; rego (and the engine) report the error alone.
	if tc.WantResult == nil || err != nil {
		return
	}
	want := ast.NewSet()
	for _, b := range *tc.WantResult {
		obj := ast.NewObject()
		for k, v := range b {
			obj.Insert(ast.StringTerm(k), ast.NewTerm(ast.MustInterfaceToValue(v)))
		}
		want.Add(ast.NewTerm(obj))
	}
	gotSet := ast.NewSet()
	for _, b := range got {
		obj := ast.NewObject()
		for k, v := range b {
			if tc.SortBindings {
				if arr, ok := v.([]any); ok {
					slices.SortFunc(arr, util.Compare)
				}
			}
			if tc.IgnoreGeneratedVars && strings.HasPrefix(k, "__localq") {
				continue
			}
			obj.Insert(ast.StringTerm(k), ast.NewTerm(ast.MustInterfaceToValue(v)))
		}
		gotSet.Add(ast.NewTerm(obj))
	}
	if want.Compare(gotSet) != 0 {
		t.Fatalf("unexpected result:\nwant: %v\ngot:  %v", want, gotSet)
	}
}

// isRefusal tells a refusal to evaluate from an evaluation error (which
// wraps ErrUnsupported as well, but carries topdown's error).
func isRefusal(err error) bool {
	var te *topdown.Error
	return errors.Is(err, ErrUnsupported) && !errors.As(err, &te)
}

func errorCode(err error) string {
	var te *topdown.Error
	if errors.As(err, &te) {
		return te.Code
	}
	if err == nil {
		return ""
	}
	return "(not a topdown error)"
}

// evalRego evaluates query through OPA's rego package, with topdown or
// (compiled) with this package's target, so that both results go through
// the same result handling.
func evalRego(t *testing.T, c *ast.Compiler, query ast.Body, data, input ast.Value, strict, compiled bool) (rego.ResultSet, error) {
	t.Helper()
	ctx := t.Context()
	opts := []func(*rego.Rego){
		rego.ParsedQuery(query.Copy()),
		rego.Compiler(c),
		rego.Store(inmem.NewFromObject(mustJSON(t, data))),
		rego.StrictBuiltinErrors(strict),
	}
	if compiled {
		registerTarget()
		req := &prepareRequest{data: data, caps: c.Capabilities(), rules: c.RuleTree}
		ctx = context.WithValue(ctx, prepareKey{}, req)
		opts = append(opts, rego.Target(targetName), rego.EvalMode(ast.EvalModeTopdown))
	}
	pq, err := rego.New(opts...).PrepareForEval(ctx)
	if err != nil {
		t.Fatalf("prepare (compiled=%v): %v", compiled, err)
	}
	var eopts []rego.EvalOption
	if input != nil {
		eopts = append(eopts, rego.EvalParsedInput(input))
	}
	return pq.Eval(t.Context(), eopts...)
}

func mustJSON(t *testing.T, v ast.Value) map[string]any {
	t.Helper()
	j, err := ast.JSON(v)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := j.(map[string]any)
	return m
}

// sameResultSets compares two result sets as sets.
func sameResultSets(a, b ResultSet) bool {
	toSet := func(rs ResultSet) ast.Set {
		s := ast.NewSet()
		for _, r := range rs {
			s.Add(ast.NewTerm(r))
		}
		return s
	}
	return toSet(a).Compare(toSet(b)) == 0
}

// sameResults compares two rego result sets as sets, since the compiled
// evaluator reports each distinct solution once.
func sameResults(a, b rego.ResultSet) bool {
	toSet := func(rs rego.ResultSet) ast.Set {
		s := ast.NewSet()
		for _, r := range rs {
			s.Add(ast.NewTerm(ast.MustInterfaceToValue(map[string]any{
				"expressions": expressionValues(r),
				"bindings":    r.Bindings,
			})))
		}
		return s
	}
	return toSet(a).Compare(toSet(b)) == 0
}

func expressionValues(r rego.Result) []any {
	out := make([]any, len(r.Expressions))
	for i, e := range r.Expressions {
		out[i] = e.Value
	}
	return out
}

// opaVersion is the version of the OPA module the suite comes from.
func opaVersion() string { return "v" + version.Version }

func TestMain(m *testing.M) {
	// OPA's topdown test runner provides this built-in to the suite.
	rego.RegisterBuiltin1(&rego.Function{
		Name: "test.sleep",
		Decl: types.NewFunction(types.Args(types.S), types.NewNull()),
	}, func(_ rego.BuiltinContext, op *ast.Term) (*ast.Term, error) {
		d, _ := time.ParseDuration(string(op.Value.(ast.String)))
		time.Sleep(d)
		return ast.NullTerm(), nil
	})
	os.Exit(m.Run())
}
