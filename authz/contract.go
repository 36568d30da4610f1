package authz

import (
	"fmt"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"

	"github.com/verdict-pdp/verdict/bundles"
)

// contractRule is one rule of the policy contract the engine reads from the
// entrypoint package, with the type its values must have.
type contractRule struct {
	name string
	want string // the contract's type, as messages show it
	// mismatch reports whether a value of type t can be outside the
	// contract for a reason the type checker knows (a string where a
	// boolean is wanted). Unknown types (any) are never a mismatch: they
	// are checked when the decision is read.
	mismatch func(t types.Type) bool
}

var contract = [...]contractRule{
	{name: "allow", want: "boolean", mismatch: notBoolean},
	{name: "reasons", want: "a set or array of strings", mismatch: notStringCollection},
	{name: "headers", want: "an object of strings to strings", mismatch: notStringObject},
}

// checkContract type-checks the entrypoint package's allow, reasons and
// headers rules against the policy contract with the types OPA's checker
// inferred, so that a policy whose headers are {"x": 1} or whose allow is
// "yes" is a load error at the rule's file:row:col instead of a 500 on
// every allowed request. A package without allow is an error too. c is the
// compiled snapshot; s is re-parsed only to locate a rule when a check
// fails.
func checkContract(c *ast.Compiler, s *bundles.Snapshot, entry string) []bundles.Problem {
	pkg := ast.MustParseRef("data." + entry)
	var problems []bundles.Problem
	base := baseDocument(s.Data, entry)
	for _, cr := range contract {
		ref := pkg.Append(ast.StringTerm(cr.name))
		rules := c.GetRulesWithPrefix(ref)
		if v, ok := base[cr.name]; ok {
			// A value in the data at the entrypoint's path (data.json's
			// {"authz": {"headers": ...}}) is read like a rule's.
			if t := dataType(v); t == nil || cr.mismatch(t) {
				problems = append(problems, bundles.Problem{Code: "verdict_contract_error",
					Message: fmt.Sprintf("data.%s.%s in the policy set's data has type %s but must be %s",
						entry, cr.name, typeName(t), cr.want)})
			}
			continue
		}
		if len(rules) == 0 {
			if cr.name == "allow" {
				problems = append(problems, bundles.Problem{File: packageFile(c, pkg), Line: packageRow(c, pkg), Code: "verdict_contract_error",
					Message: fmt.Sprintf("package %s defines no allow rule: every decision would deny", entry)})
			}
			continue
		}
		t := c.TypeEnv.GetByRef(ref)
		if t == nil || !cr.mismatch(t) {
			continue
		}
		culprit, culpritType := locateMismatch(s, entry, cr, rules)
		if culpritType == nil {
			culpritType = t
		}
		p := bundles.Problem{Code: "verdict_contract_error", Message: fmt.Sprintf("data.%s.%s has type %s but must be %s",
			entry, cr.name, types.Sprint(culpritType), cr.want)}
		if loc := culprit.Location; loc != nil {
			p.File, p.Line, p.Col = loc.File, loc.Row, loc.Col
		}
		problems = append(problems, p)
	}
	return problems
}

// baseDocument returns the object the data holds at the entrypoint's path
// (data.json's {"authz": {...}} for entrypoint "authz"), or nil.
func baseDocument(data map[string]any, entry string) map[string]any {
	doc := data
	for _, part := range strings.Split(entry, ".") {
		next, ok := doc[part].(map[string]any)
		if !ok {
			return nil
		}
		doc = next
	}
	return doc
}

// dataType is the type of a value from the data, or nil when it cannot be
// typed (a value the engine could not load either).
func dataType(v any) types.Type {
	val, err := ast.InterfaceToValue(v)
	if err != nil {
		return nil
	}
	native, err := ast.JSON(val)
	if err != nil {
		return nil
	}
	return types.TypeOf(native)
}

func typeName(t types.Type) string {
	if t == nil {
		return "unknown"
	}
	return types.Sprint(t)
}

// locateMismatch finds the rule whose own type breaks the contract. The
// checker keeps only the union of a rule set's types, so each candidate
// rule is copied under a name of its own and the snapshot is compiled once
// more (only when a check has already failed) to read every copy's type.
// When that fails, the first rule (by position) is blamed.
func locateMismatch(s *bundles.Snapshot, entry string, cr contractRule, rules []*ast.Rule) (*ast.Rule, types.Type) {
	sort.Slice(rules, func(i, j int) bool { return rules[i].Location.Compare(rules[j].Location) < 0 })
	first := rules[0]
	modules, problems, _ := parseModules(s, false)
	if len(problems) > 0 {
		return first, nil
	}
	pkg := ast.MustParseRef("data." + entry)
	var names []string
	var originals []*ast.Rule
	for _, m := range modules {
		if !m.Package.Path.Equal(pkg) {
			continue
		}
		for _, r := range m.Rules {
			if len(r.Head.Ref()) == 0 || !r.Head.Ref()[0].Equal(ast.VarTerm(cr.name)) {
				continue
			}
			name := fmt.Sprintf("__verdict_contract_%d", len(names))
			cp := r.Copy()
			renameHead(cp, name)
			cp.Module = m
			m.Rules = append(m.Rules, cp)
			names = append(names, name)
			originals = append(originals, r)
		}
	}
	schema, err := inputSchemaSet()
	if err != nil {
		return first, nil
	}
	c2 := ast.NewCompiler().WithSchemas(schema)
	if c2.Compile(modules); c2.Failed() {
		return first, nil
	}
	var culprit *ast.Rule
	var culpritType types.Type
	for i, name := range names {
		t := c2.TypeEnv.GetByRef(pkg.Append(ast.StringTerm(name)))
		if t == nil || !cr.mismatch(t) {
			continue
		}
		if culprit == nil || originals[i].Location.Compare(culprit.Location) < 0 {
			culprit, culpritType = originals[i], t
		}
	}
	if culprit == nil {
		return first, nil
	}
	return culprit, culpritType
}

// renameHead renames a rule (and its else branches) to name, keeping any
// further parts of a ref head (headers["x"] := ...).
func renameHead(r *ast.Rule, name string) {
	for ; r != nil; r = r.Else {
		ref := r.Head.Ref().Copy()
		ref[0] = ast.VarTerm(name)
		r.Head.SetRef(ref)
		r.Head.Name = ast.Var(name)
	}
}

func packageFile(c *ast.Compiler, pkg ast.Ref) string {
	if m := packageModule(c, pkg); m != nil && m.Package.Location != nil {
		return m.Package.Location.File
	}
	return ""
}

func packageRow(c *ast.Compiler, pkg ast.Ref) int {
	if m := packageModule(c, pkg); m != nil && m.Package.Location != nil {
		return m.Package.Location.Row
	}
	return 0
}

// packageModule returns the first module (by name) declaring pkg.
func packageModule(c *ast.Compiler, pkg ast.Ref) *ast.Module {
	var names []string
	for name, m := range c.Modules {
		if m.Package.Path.Equal(pkg) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	sort.Strings(names)
	return c.Modules[names[0]]
}

// unwrapType strips the named and recursive wrappers the checker uses.
func unwrapType(t types.Type) types.Type {
	for {
		switch x := t.(type) {
		case *types.NamedType:
			t = x.Type
		case *types.Recursive:
			t = x.Unwrap()
		default:
			return t
		}
	}
}

// anyMismatch applies f to the alternatives of a union. The unconstrained
// any (no alternatives) is never a mismatch.
func anyMismatch(t types.Any, f func(types.Type) bool) bool {
	for _, alt := range t {
		if f(alt) {
			return true
		}
	}
	return false
}

// notScalar reports whether t may be something other than the scalar type
// T; a union mismatches when one of its alternatives does.
func notScalar[T types.Boolean | types.String](t types.Type) bool {
	switch x := unwrapType(t).(type) {
	case T:
		return false
	case types.Any:
		return anyMismatch(x, notScalar[T])
	}
	return true
}

func notBoolean(t types.Type) bool { return notScalar[types.Boolean](t) }

func notString(t types.Type) bool { return notScalar[types.String](t) }

func notStringCollection(t types.Type) bool {
	switch x := unwrapType(t).(type) {
	case *types.Set:
		return x.Of() != nil && notString(x.Of())
	case *types.Array:
		for i := range x.Len() {
			if notString(x.Select(i)) {
				return true
			}
		}
		return x.Dynamic() != nil && notString(x.Dynamic())
	case types.Any:
		return anyMismatch(x, notStringCollection)
	}
	return true
}

func notStringObject(t types.Type) bool {
	switch x := unwrapType(t).(type) {
	case *types.Object:
		for _, p := range x.StaticProperties() {
			if _, ok := p.Key.(string); !ok || notString(p.Value) {
				return true
			}
		}
		if d := x.DynamicProperties(); d != nil {
			return notString(d.Key) || notString(d.Value)
		}
		return false
	case types.Any:
		return anyMismatch(x, notStringObject)
	}
	return true
}
