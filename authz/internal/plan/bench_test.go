package plan_test

// Benchmarks of the compiled evaluator against OPA's topdown evaluator on
// the default policy set, evaluated the way the engine evaluates it:
//
//	go test -run '^$' -bench . -benchmem -cpu 1 -count 5 ./authz/internal/plan
//
// Both evaluate the engine's decision query on the same input document,
// converted to an OPA value once, with the engine's options: strict
// built-in errors, print statements kept (no hook), a per-evaluation
// timeout, no metrics, the result read as OPA terms.

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/internal/plan"
	"github.com/verdict-pdp/verdict/bundles"
)

const benchTimeout = 10 * time.Second

// benchInputs are requests the default policy decides, as the engine's
// input documents: "viewer" is the headline (a user's token with the
// viewer role reading an order, as in authz's own benchmarks).
func benchInputs(now time.Time) map[string]ast.Value {
	claims := map[string]any{
		"iss": "https://idp.example.com", "aud": "orders-api", "sub": "alice",
		"iat": json.Number(strconv.FormatInt(now.Unix(), 10)), "exp": json.Number(strconv.FormatInt(now.Add(time.Hour).Unix(), 10)),
		"jti": "bench-0", "roles": []any{"viewer"},
	}
	subject := map[string]any{"authenticated": true, "method": "token", "id": "alice", "issuer": "https://idp.example.com", "claims": claims}
	anonymous := map[string]any{"authenticated": false}
	noCaller := map[string]any{"authenticated": false, "method": "none"}
	context := map[string]any{"time": now.UTC().Format(time.RFC3339Nano), "request_id": "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"}
	doc := func(subject, caller, action map[string]any) ast.Value {
		return ast.MustInterfaceToValue(map[string]any{
			"subject": subject, "caller": caller, "action": action, "resource": map[string]any{}, "context": context,
		})
	}
	return map[string]ast.Value{
		"viewer":    doc(subject, noCaller, map[string]any{"name": "orders:read"}),
		"anonymous": doc(anonymous, noCaller, map[string]any{"name": "catalog:read"}),
		"service": doc(anonymous, map[string]any{"authenticated": true, "id": "payments", "method": "token", "claims": map[string]any{"azp": "payments"}},
			map[string]any{"name": "inventory:reserve"}),
		"forwarded": doc(subject, noCaller, map[string]any{"method": "GET", "path": "/orders/42", "segments": []any{"orders", "42"}}),
		"denied":    doc(subject, noCaller, map[string]any{"name": "orders:delete"}),
	}
}

var benchOrder = []string{"viewer", "anonymous", "service", "forwarded", "denied"}

// benchSnapshot is the default policy set compiled as authz.Load compiles
// it (no tests).
func benchSnapshot(b *testing.B) (*bundles.Snapshot, *ast.Compiler) {
	b.Helper()
	s := authztest.DefaultPolicies(b)
	c, err := authz.Compile(s, authz.CompileOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return s, c
}

func BenchmarkEval(b *testing.B) {
	ctx := context.Background()
	s, c := benchSnapshot(b)
	pq, err := prepareTopdown(ctx, c, ast.MustParseBody("data.verdict_entrypoint.decision"), s.Data)
	if err != nil {
		b.Fatal(err)
	}
	data, err := ast.InterfaceToValue(s.Data)
	if err != nil {
		b.Fatal(err)
	}
	pl, err := plan.Prepare(ctx, plan.Options{Compiler: c, Query: ast.MustParseBody(decisionQuery), Data: data})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()

	topdownEval := func(input ast.Value) *ast.Term {
		rs, err := evalTopdown(ctx, pq, input, now)
		if err != nil || len(rs) != 1 {
			b.Fatalf("topdown: %v, %v", rs, err)
		}
		return rs[0].Expressions[0].Value.(*ast.Term)
	}
	compiledEval := func(input ast.Value) *ast.Term {
		rs, err := evalCompiled(ctx, pl, input, now)
		if err != nil || len(rs) != 1 {
			b.Fatalf("compiled: %v, %v", rs, err)
		}
		return rs[0].Get(decisionKey)
	}

	inputs := benchInputs(now)
	for _, name := range benchOrder {
		input := inputs[name]
		want, got := topdownEval(input), compiledEval(input)
		if want.Value.Compare(got.Value) != 0 {
			b.Fatalf("%s: topdown %v, compiled %v", name, want, got)
		}
		b.Run(name+"/topdown", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				topdownEval(input)
			}
		})
		b.Run(name+"/compiled", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				compiledEval(input)
			}
		})
	}
}

var decisionKey = ast.InternedTerm("decision")

// BenchmarkPrepare is the load-time cost of preparing the decision query
// on an already compiled default policy set, for each evaluator.
func BenchmarkPrepare(b *testing.B) {
	ctx := context.Background()
	s, c := benchSnapshot(b)
	data, err := ast.InterfaceToValue(s.Data)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("topdown", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := prepareTopdown(ctx, c, ast.MustParseBody("data.verdict_entrypoint.decision"), s.Data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compiled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := plan.Prepare(ctx, plan.Options{Compiler: c, Query: ast.MustParseBody(decisionQuery), Data: data}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
