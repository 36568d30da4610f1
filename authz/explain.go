package authz

import (
	"fmt"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// Step is one rule that took part in a decision, as an explanation lists
// it: a rule (or an else branch) whose body held, with the value it
// produced.
type Step struct {
	// Package is the rule's package, without "data." ("authz").
	Package string `json:"package"`
	// Rule is the rule's name, with its key for a partial rule
	// ("reasons[\"no role grants orders:delete\"]").
	Rule string `json:"rule"`
	// Location is where the rule (or the else branch that fired) is,
	// "file:row".
	Location string `json:"location"`
	// Else is true when the step is an else branch of the rule.
	Else bool `json:"else,omitempty"`
	// Value is the value the rule produced, as JSON.
	Value any `json:"value"`
}

// String renders a step as "file:row: package.rule = value".
func (s Step) String() string {
	branch := ""
	if s.Else {
		branch = " (else)"
	}
	return fmt.Sprintf("%s: %s.%s%s = %s", s.Location, s.Package, s.Rule, branch, jsonText(s.Value))
}

func jsonText(v any) string {
	t, err := ast.InterfaceToValue(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return t.String()
}

// explainer collects the rules that held during one evaluation, in the
// order they held. It is a topdown.QueryTracer for one evaluation; not
// safe for concurrent use.
type explainer struct {
	steps     []Step
	seen      map[string]bool    // location + value: a rule reported once per value
	elseRules map[*ast.Rule]bool // the snapshot's else branches
}

var _ topdown.QueryTracer = (*explainer)(nil)

func (x *explainer) Enabled() bool { return true }

// Config asks for local variables to be plugged, so that a rule's value is
// known when it exits.
func (x *explainer) Config() topdown.TraceConfig { return topdown.TraceConfig{PlugLocalVars: true} }

// TraceEvent records a rule that exited (its body held).
func (x *explainer) TraceEvent(evt topdown.Event) {
	if evt.Op != topdown.ExitOp {
		return
	}
	rule, ok := evt.Node.(*ast.Rule)
	if !ok || rule.Module == nil || rule.Location == nil || strings.HasPrefix(rule.Location.File, "verdict:") {
		return
	}
	value := plug(rule.Head.Value, evt.Locals)
	key := rule.Head.Key
	name := rule.Head.Ref().String()
	if key != nil && rule.Head.Value == nil { // a partial set rule: its key is its value
		value = plug(key, evt.Locals)
	} else if key != nil {
		name += "[" + plug(key, evt.Locals).String() + "]"
	}
	if value == nil {
		return
	}
	loc := fmt.Sprintf("%s:%d", rule.Location.File, rule.Location.Row)
	id := loc + " " + name + " " + value.String()
	if x.seen[id] {
		return
	}
	if x.seen == nil {
		x.seen = map[string]bool{}
	}
	x.seen[id] = true
	native, err := ast.JSON(value.Value)
	if err != nil {
		native = value.String()
	}
	x.steps = append(x.steps, Step{
		Package:  strings.TrimPrefix(rule.Module.Package.Path.String(), "data."),
		Rule:     name,
		Location: loc,
		Else:     x.elseRules[rule],
		Value:    native,
	})
}

// plug substitutes the evaluation's bindings into t; nil when t is nil or
// holds a variable that is not bound.
func plug(t *ast.Term, locals *ast.ValueMap) *ast.Term {
	if t == nil {
		return nil
	}
	unbound := false
	out, err := ast.TransformVars(t.Copy(), func(v ast.Var) (ast.Value, error) {
		if locals != nil {
			if b := locals.Get(v); b != nil {
				return b, nil
			}
		}
		unbound = true
		return v, nil
	})
	if err != nil || unbound {
		return nil
	}
	switch v := out.(type) {
	case *ast.Term:
		return v
	case ast.Value:
		return ast.NewTerm(v)
	}
	return nil
}

// elseBranches lists the else branches of the compiled modules, so that an
// explanation can say which branch of a rule fired.
func elseBranches(c *ast.Compiler) map[*ast.Rule]bool {
	out := map[*ast.Rule]bool{}
	for _, m := range c.Modules {
		for _, r := range m.Rules {
			for e := r.Else; e != nil; e = e.Else {
				out[e] = true
			}
		}
	}
	return out
}
