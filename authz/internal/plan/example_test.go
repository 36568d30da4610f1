package plan_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/internal/plan"
)

func Example() {
	ctx := context.Background()
	c := ast.MustCompileModulesWithOpts(map[string]string{"authz.rego": `package authz

default allow := false

allow if input.user in data.admins
`}, ast.CompileOpts{ParserOptions: ast.ParserOptions{RegoVersion: ast.RegoV1}})
	q, err := plan.Prepare(ctx, plan.Options{
		Compiler: c,
		Query:    ast.MustParseBody("allow = data.authz.allow"),
		Data:     ast.MustInterfaceToValue(map[string]any{"admins": []any{"alice"}}),
	})
	if errors.Is(err, plan.ErrUnsupported) {
		fmt.Println("evaluate with topdown:", err)
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, user := range []string{"alice", "bob"} {
		input := ast.MustInterfaceToValue(map[string]any{"user": user})
		rs, err := q.Eval(ctx, input, plan.EvalOptions{StrictBuiltinErrors: true})
		if errors.Is(err, plan.ErrUnsupported) {
			fmt.Println("evaluate this input with topdown:", err)
			continue
		}
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(user, rs[0].Get(ast.InternedTerm("allow")))
	}
	// Output:
	// alice true
	// bob false
}
