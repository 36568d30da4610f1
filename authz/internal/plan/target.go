package plan

import (
	"context"
	"errors"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/ir"
	"github.com/open-policy-agent/opa/v1/rego"
)

// targetName is the rego evaluation target under which this package plans
// queries. OPA hands the plan of a query prepared for a registered target
// to that target's plugin; that hand-over is the public route to OPA's
// planner.
const targetName = "verdict-compiled"

// registerTarget registers the plugin with OPA, once per process: OPA keeps
// its target plugins in a registry of its own, and refuses a second
// registration of the same name. The plugin itself holds no state.
var registerTarget = sync.OnceFunc(func() {
	rego.RegisterPlugin(targetName, targetPlugin{})
})

// prepareRequest travels to the plugin in the context of rego's
// PrepareForEval: the base document in, the prepared plan (or the reason
// there is none) out.
type prepareRequest struct {
	data  ast.Value
	caps  *ast.Capabilities
	rules *ast.TreeNode // the compiler's rule tree
	plan  *Query
	err   error
}

type prepareKey struct{}

// targetPlugin is the rego.TargetPlugin that receives OPA's plan.
type targetPlugin struct{}

var _ rego.TargetPlugin = targetPlugin{}

func (targetPlugin) IsTarget(t string) bool { return t == targetName }

func (targetPlugin) PrepareForEval(ctx context.Context, policy *ir.Policy, _ ...rego.PrepareOption) (rego.TargetPluginEval, error) {
	req, _ := ctx.Value(prepareKey{}).(*prepareRequest)
	if req == nil {
		return nil, errors.New("plan: the " + targetName + " target is prepared through plan.Prepare only")
	}
	err := checkDroppedLookupRules(policy, req.rules)
	var prog *program
	if err == nil {
		prog, err = compileProgram(policy, req.data, req.caps)
	}
	if err != nil {
		req.err = err
		return nil, err
	}
	req.plan = &Query{prog: prog}
	return regoEval{req.plan}, nil
}

// regoEval lets rego evaluate a prepared plan (tests compare the two
// evaluators through rego's own result handling this way).
type regoEval struct{ p *Query }

func (r regoEval) Eval(ctx context.Context, ectx *rego.EvalContext, rt ast.Value) (ast.Value, error) {
	opts := EvalOptions{
		Time:                        ectx.Time(),
		StrictBuiltinErrors:         ectx.StrictBuiltinErrors(),
		PrintHook:                   ectx.PrintHook(),
		Cancel:                      ectx.ExternalCancel(),
		Seed:                        ectx.Seed(),
		Metrics:                     ectx.Metrics(),
		NDBuiltinCache:              ectx.NDBCache(),
		InterQueryBuiltinCache:      ectx.InterQueryBuiltinCache(),
		InterQueryBuiltinValueCache: ectx.InterQueryBuiltinValueCache(),
		Capabilities:                ectx.Capabilities(),
	}
	if rt != nil {
		opts.Runtime = ast.NewTerm(rt)
	}
	rs, err := r.p.Eval(ctx, ectx.ParsedInput(), opts)
	if err != nil {
		return nil, err
	}
	set := ast.NewSet()
	for _, obj := range rs {
		set.Add(ast.NewTerm(obj))
	}
	return set, nil
}

// prepareWithRego has rego compile the query against the compiler and plan
// it for this package's target, and returns the plan the plugin prepared.
func prepareWithRego(ctx context.Context, c *ast.Compiler, query ast.Body, data ast.Value) (*Query, error) {
	registerTarget()
	req := &prepareRequest{data: data, caps: c.Capabilities(), rules: c.RuleTree}
	ctx = context.WithValue(ctx, prepareKey{}, req)
	_, err := rego.New(
		rego.ParsedQuery(query),
		rego.Compiler(c),
		rego.Target(targetName),
		// rego switches a target's compiler to IR mode (no rule or
		// comprehension indices); switch it back so that the caller's
		// topdown queries keep their indices.
		rego.EvalMode(ast.EvalModeTopdown),
		rego.EnablePrintStatements(true),
	).PrepareForEval(ctx)
	switch {
	case req.err != nil:
		return nil, req.err
	case err != nil:
		// The query did not compile, or the planner refused it.
		var astErrs ast.Errors
		if errors.As(err, &astErrs) {
			return nil, err
		}
		return nil, &UnsupportedError{Feature: "planning", cause: err}
	case req.plan == nil:
		// rego evaluates a query for a target no plugin claims with
		// topdown, without a word: the registration was undone.
		return nil, &UnsupportedError{Feature: "planning: the " + targetName + " target is not registered with rego"}
	}
	return req.plan, nil
}
