package authz_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// wantTopdown fails the test unless topdown serves e's snapshot and the
// reason the compiled evaluator gives contains why.
func wantTopdown(t *testing.T, e *authz.Engine, why string) {
	t.Helper()
	if ev := e.Status().Evaluator; !strings.HasPrefix(ev, "topdown: ") || !strings.Contains(ev, why) {
		t.Errorf("Status().Evaluator = %q, want topdown and why (%q)", ev, why)
	}
}

// wantTopdownDenies loads snap into an engine without a decision cache and
// fails t unless topdown serves it (for why) and req is denied.
func wantTopdownDenies(t *testing.T, snap *bundles.Snapshot, why string, req authz.Request) {
	t.Helper()
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
	wantTopdown(t, e, why)
	if d, err := e.Decide(t.Context(), req); d.Allow {
		t.Errorf("allowed (%v)", err)
	}
}

// TestEvaluatorObjectKeyGivenTwice: an object literal whose keys come from
// the request can turn out to hold one key twice. Which value survives is
// topdown's own affair (the first or the last, depending on how the keys
// are written), and the planner orders a literal's keys its own way. Where
// such a literal is only an argument of a built-in function, the compiled
// evaluator evaluates it and refuses the colliding request, and topdown
// answers it: the same answer on both engines, with one fallback counted.
// Elsewhere (a rule's value, a function's result, a lookup's head) the
// snapshot is left to topdown at load, as for every literal with keys that
// are not constants, which topdown enumerates as written (see
// TestEvaluatorLiteralEnumeratedAsWritten). Before, the compiled evaluator
// kept the last value in its own order, and allowed requests topdown denies.
func TestEvaluatorObjectKeyGivenTwice(t *testing.T) {
	lookups := []string{
		`{input.resource.label: "read", "public": "blocked"}`,
		`{"public": "blocked", input.resource.label: "read"}`,
		`{input.resource.label: "read", "public": concat("", ["blo", "cked"])}`,
		`{input.resource.other: "blocked", input.resource.label: "read"}`,
		`{input.resource.label: "read", input.resource.other: "blocked"}`,
		`{input.resource.label: "read", lower("PUBLIC"): "blocked"}`,
	}
	type policy struct {
		src      string
		compiled bool // evaluated compiled, the colliding request by topdown
	}
	var policies []policy
	for _, o := range lookups {
		policies = append(policies,
			policy{src: "package authz\n\npermits := " + o + "\n\nallow if permits[input.resource.label] == \"read\"\n"},
			policy{src: "package authz\n\nallow if object.get(" + o + ", input.resource.label, \"\") == \"read\"\n", compiled: true})
	}
	policies = append(policies,
		// A nested value is planned between the insertions: the literal is
		// not folded into one instruction.
		policy{src: "package authz\n\npermits := {input.resource.label: {\"v\": \"read\"}, \"public\": {\"v\": \"blocked\"}}\n\nallow if permits[input.resource.label].v == \"read\"\n"},
		policy{src: "package authz\n\nallow if object.get({\"public\": {\"v\": \"blocked\"}, input.resource.label: {\"v\": \"read\"}}, [input.resource.label, \"v\"], \"\") == \"read\"\n", compiled: true},
		policy{src: "package authz\n\nf(x) := {x: \"read\", \"public\": \"blocked\"}\n\nallow if f(input.resource.label)[input.resource.label] == \"read\"\n"},
		policy{src: "package authz\n\nallow if {input.resource.label: \"read\", \"public\": \"blocked\"}[input.resource.label] == \"read\"\n"},
	)
	colliding := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"label": "public", "other": "public"}}
	distinct := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"label": "docs", "other": "public"}}
	for i, p := range policies {
		snap := authztest.Policy(t, "objectkeys", p.src)
		compiled := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
		topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, snap)
		for _, req := range []authz.Request{colliding, distinct} {
			got, gotErr := compiled.Decide(t.Context(), req)
			want, wantErr := topdown.Decide(t.Context(), req)
			if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) || strings.Join(got.Reasons, ",") != strings.Join(want.Reasons, ",") {
				t.Errorf("policy %d, resource %v: compiled allow=%v %v (%v), topdown allow=%v %v (%v)\n%s",
					i, req.Resource, got.Allow, got.Reasons, gotErr, want.Allow, want.Reasons, wantErr, p.src)
			}
		}
		st := compiled.Status()
		switch {
		case !p.compiled && (!strings.HasPrefix(st.Evaluator, "topdown: ") || !strings.Contains(st.Evaluator, "literal")):
			t.Errorf("policy %d: evaluator %q, want topdown and why\n%s", i, st.Evaluator, p.src)
		case p.compiled && st.EvaluatorFallbacks != 1:
			// The distinct keys are evaluated by the compiled evaluator,
			// the colliding ones by topdown.
			t.Errorf("policy %d: evaluator %q, %d fallbacks, want compiled with 1 (the colliding request)\n%s",
				i, st.Evaluator, st.EvaluatorFallbacks, p.src)
		}
	}
}

// TestEvaluatorLiteralEnumeratedAsWritten: a set literal with elements
// that are not constants, enumerated. topdown enumerates it as written:
// "guest" (a constant) before the request's role, and both of two elements
// that turn out equal; the compiled evaluator enumerated the set it built,
// in the value's order and each element once, and allowed both requests
// that topdown denies. Such a snapshot is now served by topdown; a literal
// that is only an argument of a built-in function (role in {...}) stays
// compiled. See TestDivergenceLiteralEnumeratedAsWritten in internal/plan.
func TestEvaluatorLiteralEnumeratedAsWritten(t *testing.T) {
	for _, tc := range []struct {
		policy   string
		resource map[string]any
		compiled bool
		want     bool
	}{
		{policy: "allow if [r | some r in {input.resource.role, \"guest\"}][0] == \"admin\"",
			resource: map[string]any{"role": "admin"}},
		{policy: "allow if count([v | some v in {input.resource.a, input.resource.b}]) == 1",
			resource: map[string]any{"a": "x", "b": "x"}},
		{policy: "allow if input.resource.role in {input.resource.owner, \"admin\"}",
			resource: map[string]any{"role": "admin", "owner": "alice"}, compiled: true, want: true},
	} {
		e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "literal", "package authz\n\n"+tc.policy+"\n"))
		if ev := e.Status().Evaluator; strings.HasPrefix(ev, "compiled") != tc.compiled {
			t.Errorf("%s: evaluator %q, want compiled=%v", tc.policy, ev, tc.compiled)
		}
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: tc.resource})
		if err != nil || d.Allow != tc.want {
			t.Errorf("%s: allow=%v (%v), want %v", tc.policy, d.Allow, err, tc.want)
		}
	}
}

// TestEvaluatorNumberWrittenOtherwise: a request that writes one number two
// ways (1.0 and 1, as the HTTP front keeps JSON numbers) against a rule
// keyed by a number. topdown answers the second call of f from the first
// (1.0) and finds no rule o[1.0]; the compiled evaluator's f(1) is 1 and
// found o[1], and allowed. Such a request was left to topdown at
// evaluation; a policy with rules keyed by numbers is now served by
// topdown whole (TestEvaluatorNonStringRuleKey). The same with an integer
// beyond int64 in a float64's form (1e+21 for 10^21). See
// TestDivergenceNumberWrittenOtherwise in internal/plan, and
// TestEvaluatorNumberMadeFromText for a number refused at evaluation.
func TestEvaluatorNumberWrittenOtherwise(t *testing.T) {
	policy := "package authz\n\no[1] := true\n\no[1000000000000000000000] := true\n\nf(x) := x\n\nallow if {\n\tf(input.resource.a)\n\to[f(input.resource.b)]\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "numbers", policy))
	wantTopdown(t, e, "key that is not a string")
	for _, tc := range []struct {
		a, b any
		want bool
	}{
		{a: json.Number("1.0"), b: json.Number("1"), want: false},
		{a: json.Number("1"), b: json.Number("1"), want: true},
		// 10^21 as Go writes a float64 (a request decoded without
		// UseNumber), and OPA the float64 in a Request.
		{a: json.Number("1e+21"), b: json.Number("1000000000000000000000"), want: false},
		{a: 1e21, b: json.Number("1000000000000000000000"), want: false},
	} {
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"a": tc.a, "b": tc.b}})
		if err != nil || d.Allow != tc.want {
			t.Errorf("a=%v b=%v: allow=%v (%v), want %v", tc.a, tc.b, d.Allow, err, tc.want)
		}
	}
}

// TestEvaluatorNumberMadeFromText: a number made by to_number from the
// request's text ("1.0", "01", "+1"), past the check of the input, and
// printed: topdown writes it as the text had it ([1.0]), the compiled
// evaluator wrote its plain form ([1]), and the two answered otherwise.
// Such an evaluation is left to topdown at the call.
func TestEvaluatorNumberMadeFromText(t *testing.T) {
	policy := "package authz\n\nallow if {\n\tt := to_number(input.resource.level)\n\tjson.marshal([t | some u in [1, 2]; u == t]) == \"[1.0]\"\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "totext", policy))
	topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, authztest.Policy(t, "totext", policy))
	for _, level := range []string{"1.0", "01", "+1", "1", "2"} {
		req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"level": level}}
		got, gotErr := e.Decide(t.Context(), req)
		want, wantErr := topdown.Decide(t.Context(), req)
		if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) {
			t.Errorf("level %q: allow=%v (%v), topdown allow=%v (%v)", level, got.Allow, gotErr, want.Allow, wantErr)
		}
	}
	if n := e.Status().EvaluatorFallbacks; n != 3 {
		t.Errorf("%d fallbacks, want 3 (the levels written otherwise)", n)
	}
}

// TestEvaluatorIndexedComprehensionConflict: a comprehension topdown
// indexes on the request's team evaluates ahead for every team, and a
// nested object comprehension gives one key two values in another team's
// part: topdown's evaluation fails (a deny), the compiled evaluator's
// covered the request's team only and allowed. Such a policy is now served
// by topdown. See TestDivergenceIndexedComprehensionConflict in
// internal/plan.
func TestEvaluatorIndexedComprehensionConflict(t *testing.T) {
	policy := "package authz\n\nallow if {\n\tt := input.resource.team\n\ty := [o | some e in input.resource.grants; e[0] = t; o := {\"k\": w | some w in e[1]}]\n\tcount(y) > 0\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "indexed", policy))
	wantTopdown(t, e, "comprehension that topdown indexes")
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"team": "a",
		"grants": []any{[]any{"a", []any{1}}, []any{"b", []any{1, 2}}}}}
	if d, err := e.Decide(t.Context(), req); d.Allow || !errors.Is(err, authz.ErrPolicy) {
		t.Errorf("allow=%v (%v), want topdown's conflict", d.Allow, err)
	}
}

// TestEvaluatorIndexedComprehensionKeyReadUnbound: a comprehension topdown
// indexes on the request's team reads the team (t != "admins") before the
// unification that binds it. topdown evaluates it ahead with the team
// unbound and fails with an internal error (a deny); the compiled
// evaluator, which evaluates it for the request's team, found no match and
// allowed. Such a policy is now served by topdown. See
// TestDivergenceIndexedComprehensionKeyReadUnbound in internal/plan.
func TestEvaluatorIndexedComprehensionKeyReadUnbound(t *testing.T) {
	policy := "package authz\n\nallow if {\n\tsome t in input.resource.teams\n\tblocked := [1 | t != \"admins\"; t == input.resource.owner]\n\tcount(blocked) == 0\n}\n"
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"teams": []any{"a"}, "owner": "b"}}
	wantTopdownDenies(t, authztest.Policy(t, "indexedkeyread", policy), "comprehension that topdown indexes", req)
}

// TestEvaluatorNumberKeyWrittenOtherwise: a rule with a number key in its ref head
// (levels[1] := true) looked up with a request number written 1.0, as the
// HTTP front keeps it (json.Number). topdown finds the rule by the key's Go
// value in its rule tree, where 1.0 is not 1, and denies; the compiled
// evaluator builds {1: true} and finds 1.0 in it, and allows. Such a
// policy is now served by topdown (a rule keyed by a number). See
// TestDivergenceRefHeadNumberKey in internal/plan.
func TestEvaluatorNumberKeyWrittenOtherwise(t *testing.T) {
	policy := "package authz\n\nlevels[1] := true\n\nallow if levels[input.resource.level]\n"
	snap := authztest.Policy(t, "refheadnumber", policy)
	compiled := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
	wantTopdown(t, compiled, "key that is not a string")
	topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, snap)
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"level": json.Number("1.0")}}
	got, gotErr := compiled.Decide(t.Context(), req)
	want, wantErr := topdown.Decide(t.Context(), req)
	if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) {
		t.Errorf("compiled allow=%v (%v), topdown allow=%v (%v)", got.Allow, gotErr, want.Allow, wantErr)
	}
}

// TestEvaluatorNegatedEnumeration: `not blocked[input.user]` where the
// rules under blocked sit at different depths, so OPA's planner enumerates
// them instead of looking the key up. The compiled evaluator read that
// plan as OPA's Wasm compiler does, and the negation held for every user:
// blocked users were allowed. Such a snapshot is now served by topdown.
func TestEvaluatorNegatedEnumeration(t *testing.T) {
	policy := "package authz\n\nblocked.alice := true\n\nblocked.teams.red := true\n\nallow if not blocked[input.subject.id]\n"
	snap := authztest.Policy(t, "negated", policy)
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
	wantTopdown(t, e, "negation")
	for user, want := range map[string]bool{"alice": false, "bob": true} {
		req := authz.Request{Subject: &authz.Subject{Type: "user", ID: user}, Action: authz.Action{Name: "read"}}
		d, err := e.Decide(t.Context(), req)
		if err != nil || d.Allow != want {
			t.Errorf("%s: allow=%v (%v), want %v", user, d.Allow, err, want)
		}
	}
}

// TestEvaluatorWithTargetVariable: OPA's planner panics on a with target on
// data with a variable in its path (which OPA's compiler accepts) under
// rules; such a with also writes base data beside those rules. Loading the
// policy must not take the process down: auto serves it with topdown,
// compiled refuses to load it.
func TestEvaluatorWithTargetVariable(t *testing.T) {
	snap := authztest.Snapshot(t, "withtarget", map[string]string{
		"other.rego": "package other\n\nblocked.alice := true\n",
		"authz.rego": "package authz\n\nallow if data.other.blocked.bob with data.other.blocked[input.subject.id] as true\n",
	}, nil)
	e := newEngine(t, authz.Options{}, snap)
	wantTopdown(t, e, "")
	if d, err := e.Decide(t.Context(), authz.Request{Subject: &authz.Subject{Type: "user", ID: "bob"}, Action: authz.Action{Name: "read"}}); d.Allow {
		t.Errorf("allowed (%v)", err)
	}
	strict, err := authz.New(authz.Options{Evaluator: authz.EvaluatorCompiled})
	if err != nil {
		t.Fatal(err)
	}
	if err := strict.Load(t.Context(), snap); !errors.Is(err, authz.ErrCompile) {
		t.Errorf("Load with the compiled evaluator: %v, want a compile error", err)
	}
}

// TestEvaluatorWithoutEarlyExit: topdown stops a complete rule at its first
// value; the compiled evaluator's plan evaluates every iteration. Here allow
// holds at the first of 400³ iterations: topdown answers at once, the plan
// would run past any deadline. The compiled evaluator has half the
// evaluation time, then topdown answers with the rest.
func TestEvaluatorWithoutEarlyExit(t *testing.T) {
	policy := "package authz\n\nxs := numbers.range(1, 400)\n\nallow if {\n\tsome a in xs\n\tsome b in xs\n\tsome c in xs\n\ta + b + c > 0\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1, EvalTimeout: time.Second}, authztest.Policy(t, "loops", policy))
	d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}})
	if err != nil || !d.Allow {
		t.Fatalf("got %+v, %v; want topdown's allow", d, err)
	}
	if n := e.Status().EvaluatorFallbacks; n != 1 {
		t.Errorf("%d fallbacks, want 1", n)
	}
}

// TestEvaluatorWithDataMergedIntoBase: a with on base data whose object
// value lacks a key the base document has there, read from a document
// above the target. topdown merges the value with the base document when
// it reads above the target (roles.admin.write stays true); the compiled
// evaluator read the value alone and denied. It now refuses such a with,
// so topdown answers. See TestDivergenceWithDataMergedIntoBase in
// internal/plan.
func TestEvaluatorWithDataMergedIntoBase(t *testing.T) {
	snap := authztest.Snapshot(t, "withmerge", map[string]string{
		"authz.rego": "package authz\n\nallow if {\n\troles := data.roles with data.roles.admin as {\"read\": input.action.name == \"read\"}\n\troles.admin.write\n}\n",
	}, map[string]any{"roles": map[string]any{"admin": map[string]any{"read": true, "write": true}}})
	compiled := newEngine(t, authz.Options{Evaluator: authz.EvaluatorCompiled, DecisionCacheSize: -1}, snap)
	topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, snap)
	req := authz.Request{Action: authz.Action{Name: "read"}}
	got, gotErr := compiled.Decide(t.Context(), req)
	want, wantErr := topdown.Decide(t.Context(), req)
	if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) {
		t.Errorf("compiled allow=%v (%v), topdown allow=%v (%v)", got.Allow, gotErr, want.Allow, wantErr)
	}
	if n := compiled.Status().EvaluatorFallbacks; n != 1 {
		t.Errorf("%d fallbacks, want 1", n)
	}
}

// TestEvaluatorWithBelowReplacedDocument: a with on data below a document
// that an enclosing with replaced by something other than an object, read
// from above both. topdown gathers the withs' values in one overlay: the
// inner with turns the outer value ("read", the request's action) into
// {"read": true}, and reading data.roles merges that with the base
// document, so roles.admin.write stays true and the request is denied. The
// compiled evaluator wrote {"read": true} over "read" and read it alone:
// write was undefined, and not allowed what topdown denies. It now refuses
// the inner with there, so topdown answers. See
// TestDivergenceWithBelowReplacedDocument in internal/plan.
func TestEvaluatorWithBelowReplacedDocument(t *testing.T) {
	snap := authztest.Snapshot(t, "withnested", map[string]string{
		"authz.rego": "package authz\n\nperms := p if {\n\tp := data.roles with data.roles.admin.read as true\n}\n\nallow if {\n\tnot perms.admin.write with data.roles.admin as input.action.name\n}\n",
	}, map[string]any{"roles": map[string]any{"admin": map[string]any{"write": true}}})
	compiled := newEngine(t, authz.Options{Evaluator: authz.EvaluatorCompiled, DecisionCacheSize: -1}, snap)
	topdown := newEngine(t, authz.Options{Evaluator: authz.EvaluatorTopdown, DecisionCacheSize: -1}, snap)
	req := authz.Request{Action: authz.Action{Name: "read"}}
	want, wantErr := topdown.Decide(t.Context(), req)
	if want.Allow || wantErr != nil {
		t.Fatalf("topdown allow=%v (%v), want a deny: the test no longer shows the divergence", want.Allow, wantErr)
	}
	got, gotErr := compiled.Decide(t.Context(), req)
	if got.Allow || gotErr != nil {
		t.Errorf("compiled allow=%v (%v), want topdown's deny", got.Allow, gotErr)
	}
	if n := compiled.Status().EvaluatorFallbacks; n != 1 {
		t.Errorf("%d fallbacks, want 1", n)
	}
}

// TestEvaluatorLookupDropsRulesBelow: a deny list looked up by the
// request's subject type, blocked[input.subject.type].c, where one entry is
// a rule below the looked-up depth (blocked.users.c) and another a rule
// with a variable in its head (blocked.groups[g]). OPA's planner leaves
// blocked.users out of the lookup, so the compiled evaluator found nothing
// for "users" and allowed what topdown denies. Such a policy is now served
// by topdown. See TestDivergenceLookupDropsRulesBelow in internal/plan.
func TestEvaluatorLookupDropsRulesBelow(t *testing.T) {
	policy := "package authz\n\nblocked.users.c := true\n\nblocked.groups[g] := true if {\n\tsome g in [\"admins\"]\n}\n\nallow if not blocked[input.subject.type].c\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "droppedlookup", policy))
	wantTopdown(t, e, "leaves out")
	for typ, want := range map[string]bool{"users": false, "service": true} {
		req := authz.Request{Subject: &authz.Subject{Type: typ, ID: "alice"}, Action: authz.Action{Name: "read"}}
		d, err := e.Decide(t.Context(), req)
		if err != nil || d.Allow != want {
			t.Errorf("subject type %s: allow=%v (%v), want %v", typ, d.Allow, err, want)
		}
	}
}

// TestEvaluatorNestedRuleRefsConflict: t[k] := {"b": 1} beside t.a.b := 1
// build one document at two depths, which topdown refuses as an object key
// conflict (the decision is a deny with a policy error). The compiled
// evaluator built {"a": {"b": 1}} and allowed. Such a policy is now served
// by topdown. See TestDivergenceNestedRuleRefsConflict in internal/plan.
func TestEvaluatorNestedRuleRefsConflict(t *testing.T) {
	policy := "package authz\n\nt.a.b := 1\n\nt[k] := {\"b\": 1} if some k in [\"a\"]\n\nallow if t.a.b == 1\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "nestedrefs", policy))
	wantTopdown(t, e, "two depths")
	d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}})
	if d.Allow || !errors.Is(err, authz.ErrPolicy) {
		t.Errorf("allow=%v (%v), want a deny with topdown's conflict", d.Allow, err)
	}
}

// TestEvaluatorWithFunctionByValueWithVariables: a with that replaces a
// function by an array holding a variable, reached through a rule (not
// blocked with perms as [a], where blocked calls perms). OPA's planner
// plans the array inside the re-planned rule, where a is out of scope, as a
// register nothing sets: the compiled evaluator's blocked was undefined,
// and the negation allowed the action "blocked", which topdown denies.
// Such a snapshot is now served by topdown. See
// TestDivergenceWithFunctionByValueWithVariables in internal/plan.
func TestEvaluatorWithFunctionByValueWithVariables(t *testing.T) {
	policy := "package authz\n\nperms(_) := []\n\nblocked if \"blocked\" in perms(input.subject.id)\n\nallow if {\n\ta := input.action.name\n\tnot blocked with perms as [a]\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "mockvalue", policy))
	wantTopdown(t, e, "register")
	for action, want := range map[string]bool{"blocked": false, "read": true} {
		req := authz.Request{Subject: &authz.Subject{Type: "user", ID: "alice"}, Action: authz.Action{Name: action}}
		d, err := e.Decide(t.Context(), req)
		if err != nil || d.Allow != want {
			t.Errorf("%s: allow=%v (%v), want %v", action, d.Allow, err, want)
		}
	}
}

// TestEvaluatorWithFunctionBeforeDocument: a with replacing a function (or a
// built-in function) before a with on input or data in one expression. OPA's
// planner writes the second value into the document of the first (here the
// action name into data, at action.name), so the compiled evaluator saw the
// request's own action and denied a write that topdown allows. Such a
// policy is now left to topdown.
func TestEvaluatorWithFunctionBeforeDocument(t *testing.T) {
	policy := "package authz\n\ndefault q := false\n\nlabel(x) := x\n\nallow if {\n\tinput.action.name == \"read\" with data.authz.label as \"x\" with input.action.name as \"read\"\n}\n\nallow if {\n\tq with upper as 1 with data.authz.q as true\n\tinput.action.name == \"list\"\n}\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "withorder", policy))
	wantTopdown(t, e, "")
	for _, action := range []string{"read", "write", "list"} {
		req := authz.Request{Subject: &authz.Subject{Type: "user", ID: "alice"}, Action: authz.Action{Name: action}}
		d, err := e.Decide(t.Context(), req)
		if err != nil || !d.Allow {
			t.Errorf("%s: allow=%v (%v), want true", action, d.Allow, err)
		}
	}
}

// TestEvaluatorWithFunctionUnderWithOnPackage: a with on, or by, a function
// of a package, in a rule reached under a with that replaces the whole
// package. OPA's planner no longer sees the function there. It planned a
// replacement of it as a with on data and paired the expression's next
// value with the wrong document, so that the compiled evaluator read the
// outer replacement's "read" where topdown reads the inner "write"; and it
// planned a replacement by it as a replacement by the value at its path in
// the outer replacement (true) where topdown calls the function. Both
// allowed a write that topdown denies. Such policies are now left to
// topdown.
func TestEvaluatorWithFunctionUnderWithOnPackage(t *testing.T) {
	lib := "package authz.lib\n\nr := \"none\"\n\nf(x) := x == \"read\"\n"
	for name, policy := range map[string]string{
		"on": "package authz\n\nsame if {\n\tdata.authz.lib.r == input.action.name with data.authz.lib.f as 7 with upper as 1 with data.authz.lib.r as \"write\"\n}\n\nallow if {\n\tnot same with data.authz.lib as {\"r\": \"read\"}\n}\n",
		"by": "package authz\n\nok(_) := false\n\nread if ok(input.action.name) with ok as data.authz.lib.f\n\nallow if {\n\tread with data.authz.lib as {\"f\": true}\n}\n",
	} {
		t.Run(name, func(t *testing.T) {
			snap := authztest.Snapshot(t, name, map[string]string{"lib.rego": lib, "policy.rego": policy}, nil)
			e := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
			wantTopdown(t, e, "")
			for action, want := range map[string]bool{"read": true, "write": false} {
				req := authz.Request{Subject: &authz.Subject{Type: "user", ID: "alice"}, Action: authz.Action{Name: action}}
				d, err := e.Decide(t.Context(), req)
				if err != nil || d.Allow != want {
					t.Errorf("%s: allow=%v (%v), want %v", action, d.Allow, err, want)
				}
			}
		})
	}
}

// TestEvaluatorDataBesideRulesIterated: a package whose path holds an
// object in the bundle's data (roles) beside its rules is iterated: topdown
// gives the data's keys first, then the rules'; the plan gave the rules'
// first, and keys[0] == "extra" allowed. Such a snapshot is now served by
// topdown. See TestDivergenceIterationOrderBaseAndRules in internal/plan.
// (An array there is a conflict, refused at load: TestRuleAtDataPathRefused.)
func TestEvaluatorDataBesideRulesIterated(t *testing.T) {
	snap := authztest.Snapshot(t, "objectbeside", map[string]string{
		"roles.rego": "package roles\n\nextra := true\n",
		"authz.rego": "package authz\n\nkeys := [k | some k, _ in data.roles]\n\nallow if keys[0] == \"extra\"\n",
	}, map[string]any{"roles": map[string]any{"admin": 1, "viewer": 2}})
	wantTopdownDenies(t, snap, "holds both base data and rules", authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorFunctionOutputBound: a partial set built by a function with
// a default (tiers contains tier(u)) and looked up by key. topdown calls
// tier with its output bound to the key and takes "premium" ≠ "basic" as a
// body that failed, so the default answers: tiers["basic"] holds and
// not tiers["basic"] denies, though tiers is {"premium"}. The compiled
// evaluator allowed; such a snapshot is now served by topdown. The same
// through a reference head (has_tier[t].any := true if tier(u, t)),
// whose variable the lookup binds. See TestDivergenceFunctionOutputBound
// in internal/plan.
func TestEvaluatorFunctionOutputBound(t *testing.T) {
	for _, rules := range []string{
		"tiers contains tier(u) if some u in input.resource.users\n\nallow if not tiers.basic\n",
		// A reference head's variable, bound by the lookup.
		"has_tier[t].any := true if {\n\tsome u in input.resource.users\n\ttier(u, t)\n}\n\nallow if not has_tier.basic.any\n",
	} {
		policy := "package authz\n\ndefault tier(_) := \"basic\"\n\ntier(u) := \"premium\" if u.paid\n\n" + rules
		req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"users": []any{map[string]any{"paid": true}}}}
		wantTopdownDenies(t, authztest.Policy(t, "outputbound", policy), "output may be bound", req)
	}
}

// TestEvaluatorLibraryNotReached: a library module beside the policy that
// the decision does not use holds a shape the compiled evaluator refuses
// (a set literal with a reference in it). The policy still runs compiled;
// once the decision reads that rule, it runs on topdown.
func TestEvaluatorLibraryNotReached(t *testing.T) {
	lib := "package lib\n\nprivileged := {input.resource.role, \"owner\"}\n"
	for _, tc := range []struct {
		policy   string
		compiled bool
	}{
		{"package authz\n\nallow if input.action.name == \"read\"\n", true},
		{"package authz\n\nallow if \"owner\" in data.lib.privileged\n", false},
	} {
		snap := authztest.Snapshot(t, "lib", map[string]string{"lib.rego": lib, "authz.rego": tc.policy}, nil)
		e := newEngine(t, authz.Options{DecisionCacheSize: -1}, snap)
		if ev := e.Status().Evaluator; strings.HasPrefix(ev, "compiled") != tc.compiled {
			t.Errorf("evaluator %q, want compiled %v\n%s", ev, tc.compiled, tc.policy)
		}
		req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"role": "editor"}}
		if d, err := e.Decide(t.Context(), req); !d.Allow {
			t.Errorf("denied (%v)\n%s", err, tc.policy)
		}
	}
}

// TestEvaluatorSystemPackageReached: the rules of a package under
// data.system, reached by a lookup with a variable at the root of data.
// OPA's rule tree hides data.system from such lookups, so the compiled
// evaluator's checks, which look only at what the decision reaches, missed
// the shape they refuse there (a function with a default whose output a
// set head binds) and the decision allowed where topdown denies.
func TestEvaluatorSystemPackageReached(t *testing.T) {
	snap := authztest.Snapshot(t, "system", map[string]string{
		"checks.rego": "package system.checks\n\ndefault tier(_) := \"basic\"\n\ntier(u) := \"premium\" if u.paid\n\n" +
			"tiers contains tier(u) if some u in input.resource.users\n\nok if not tiers.basic\n",
		"authz.rego": "package authz\n\nallow if data[input.resource.ns].checks.ok\n",
	}, nil)
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"ns": "system", "users": []any{map[string]any{"paid": true}}}}
	wantTopdownDenies(t, snap, "output may be bound", req)
}

// TestEvaluatorRandomSignature: a policy signing with ES256
// (io.jwt.encode_sign), whose signatures differ from call to call. topdown
// keeps a function's result for the query, so sig(x) != sig(x) is false;
// the compiled evaluator signed twice and allowed. Such a policy is now
// served by topdown. See TestDivergenceRandomSignature in internal/plan.
func TestEvaluatorRandomSignature(t *testing.T) {
	policy := "package authz\n\nk := " + authztest.PrivateJWK(t) + "\n\n" +
		"sig(x) := io.jwt.encode_sign({\"alg\": \"ES256\"}, {\"x\": x}, k)\n\nallow if sig(input.action.name) != sig(input.action.name)\n"
	wantTopdownDenies(t, authztest.Policy(t, "sign", policy), "io.jwt.encode_sign", authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorNegatedWalkPattern: deny unless the resource holds
// approved: true somewhere, written with not walk(x, [path, value]). The
// compiled evaluator's negation of walk's pattern never held, so an
// unapproved resource was allowed. Such a policy is now served by topdown.
// See TestDivergenceNegatedWalkPattern in internal/plan.
func TestEvaluatorNegatedWalkPattern(t *testing.T) {
	policy := "package authz\n\nunapproved if not walk(input.resource, [[\"approved\"], true])\n\nallow if not unapproved\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "walk", policy))
	wantTopdown(t, e, "negation")
	for _, tc := range []struct {
		resource map[string]any
		allow    bool
	}{
		{map[string]any{"approved": false}, false},
		{map[string]any{"approved": true}, true},
	} {
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: tc.resource})
		if d.Allow != tc.allow {
			t.Errorf("resource %v: allow %v (%v), want %v", tc.resource, d.Allow, err, tc.allow)
		}
	}
}

// TestEvaluatorNegatedLookupThenEnumeration: not u[...] == r[...] with u's
// rules at one depth and r's at two. The compiled evaluator's negation
// held where topdown's does not, and allowed. Such a policy is now served
// by topdown. See TestDivergenceNegatedLookupThenEnumeration in
// internal/plan.
func TestEvaluatorNegatedLookupThenEnumeration(t *testing.T) {
	policy := "package authz\n\nu.read := true\n\nu.write := true\n\nr.read := true\n\nr.admin.all := true\n\n" +
		"allow if not u[input.action.name] == r[input.resource.kind]\n"
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"kind": "read"}}
	wantTopdownDenies(t, authztest.Policy(t, "negated", policy), "negation", req)
}

// TestEvaluatorWithBelowArray: a with on data below an array of the
// bundle's data (data.cfg.blocked, a list) made the compiled evaluator
// replace the list by the with's object, so that not data.cfg.blocked[1]
// held where topdown still reads the list's element: allowed what topdown
// denies. Such a policy is now served by topdown. See
// TestDivergenceWithBelowArray in internal/plan.
func TestEvaluatorWithBelowArray(t *testing.T) {
	policy := "package authz\n\nunblocked if not data.cfg.blocked[1]\n\nallow if unblocked with data.cfg.blocked.extra as true\n"
	snap := authztest.Snapshot(t, "with-array", map[string]string{"authz.rego": policy},
		map[string]any{"cfg": map[string]any{"blocked": []any{"mallory", "eve"}}})
	wantTopdownDenies(t, snap, "a with on data below a value of the base document that is not an object",
		authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorGlobIndexed: a glob.match whose constant pattern holds a
// backslash escape is skipped by topdown's rule index for a value the
// built-in matches ("docs/public*" against docs/public\*), and the
// compiled evaluator, calling the built-in, allowed. Such a policy is now
// served by topdown. See TestDivergenceGlobIndexed in internal/plan.
func TestEvaluatorGlobIndexed(t *testing.T) {
	policy := "package authz\n\nallow if glob.match(\"docs/public\\\\*\", [\"/\"], input.resource.id)\n"
	wantTopdownDenies(t, authztest.Policy(t, "glob", policy), "glob.match with a constant pattern",
		authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"id": "docs/public*"}})
}

// TestEvaluatorVariableSetInHead: a partial set of one-element sets made
// from the request (names contains {n}) looked up by a constant set: topdown
// cannot unify the lookup's key with the head before the body runs, and
// denies; the compiled evaluator allowed. Such a policy is now served by
// topdown. See TestDivergenceVariableSetInHead in internal/plan.
func TestEvaluatorVariableSetInHead(t *testing.T) {
	policy := "package authz\n\nnames contains {n} if n := input.action.name\n\nallow if names[{\"read\"}]\n"
	wantTopdownDenies(t, authztest.Policy(t, "sethead", policy), "a rule head whose key or arguments hold a set with a variable",
		authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorIndexedBuiltinReplaced: a rule that calls startswith,
// evaluated with startswith replaced by a with: topdown's rule index skips
// it as the real function means it, and denies; the compiled evaluator ran
// it with the replacement and allowed. Such a policy is now served by
// topdown. See TestDivergenceIndexedBuiltinReplaced in internal/plan.
func TestEvaluatorIndexedBuiltinReplaced(t *testing.T) {
	policy := "package authz\n\nadmin_path if startswith(input.action.path, \"/admin\")\n\nallow if admin_path with startswith as true\n"
	wantTopdownDenies(t, authztest.Policy(t, "replaced", policy), "a with that replaces startswith",
		authz.Request{Action: authz.Action{Method: "GET", Path: "/api"}})
}

// TestEvaluatorMemberVariableIndexed: a name lowered, tested with `in`
// against the token's roles, then compared: topdown's rule index takes the
// roles for the name and skips the body, and denies; the compiled
// evaluator allowed. Such a policy is now served by topdown. See
// TestDivergenceMemberVariableIndexed in internal/plan.
func TestEvaluatorMemberVariableIndexed(t *testing.T) {
	policy := "package authz\n\nallow if {\n\ty := lower(input.resource.name)\n\ty in input.resource.roles\n\ty == \"admin\"\n}\n"
	wantTopdownDenies(t, authztest.Policy(t, "member", policy), "a variable tested with in and used again",
		authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"name": "ADMIN", "roles": []any{"admin"}}})
}

// TestEvaluatorGlobEscapedValue: a request value with a backslash before a
// delimiter, matched by glob.match("*.*", ["."], ...): topdown's rule index
// splits it otherwise and denies; the compiled evaluator allowed. Such an
// evaluation is now left to topdown (one fallback), and a plain value stays
// compiled. See TestDivergenceGlobEscapedValue in internal/plan.
func TestEvaluatorGlobEscapedValue(t *testing.T) {
	policy := "package authz\n\nallow if glob.match(\"*.*\", [\".\"], input.resource.host)\n"
	e := newEngine(t, authz.Options{DecisionCacheSize: -1}, authztest.Policy(t, "globvalue", policy))
	if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"host": `a\.b`}}); d.Allow {
		t.Errorf("a backslash before the delimiter: allowed (%v), want topdown's deny", err)
	}
	if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"host": "a.b"}}); !d.Allow || err != nil {
		t.Errorf("a plain host: allow %v, %v", d.Allow, err)
	}
	if n := e.Status().EvaluatorFallbacks; n != 1 {
		t.Errorf("%d fallbacks, want 1 (the value with a backslash)", n)
	}
}

// TestEvaluatorElseUnderVariableRef: a rule with else branches below a
// rule whose reference has a variable (outcome[k] above outcome.role) is
// evaluated by topdown without its else branches; the compiled evaluator
// evaluated them and allowed. Such a snapshot is now served by topdown.
// See TestDivergenceElseUnderVariableRef in internal/plan.
func TestEvaluatorElseUnderVariableRef(t *testing.T) {
	snap := authztest.Snapshot(t, "elseunder", map[string]string{
		"authz.rego": `package authz

outcome[k] := true if some k in input.resource.tags

outcome.role := "admin" if lower(input.action.name) == "delete" else := "viewer"

allow if outcome.role == "viewer"
`,
	}, nil)
	wantTopdownDenies(t, snap, "below a rule whose reference has a variable", authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorNonStringRuleKey: a rule keyed by a number (status[403])
// beside a default under the same object: OPA's planner grouped them into
// one object and dropped the default, so `not status.deny` allowed where
// topdown denies. Such a snapshot is now served by topdown. See
// TestDivergenceNonStringRuleKey in internal/plan.
func TestEvaluatorNonStringRuleKey(t *testing.T) {
	snap := authztest.Snapshot(t, "numberkey", map[string]string{
		"authz.rego": `package authz

status[403] := "forbidden"

default status.deny := true

status.deny := false if input.action.name == "read"

allow if not status.deny
`,
	}, nil)
	wantTopdownDenies(t, snap, "key that is not a string", authz.Request{Action: authz.Action{Name: "write"}})
}

// TestEvaluatorEmptyPackage: a package with no rules (a file holding only
// its package line) that a lookup by the request's value lands on: topdown
// reads it as {} and denies; the compiled evaluator read it as undefined
// and allowed. Such a snapshot is now served by topdown. See
// TestDivergenceEmptyPackage in internal/plan.
func TestEvaluatorEmptyPackage(t *testing.T) {
	snap := authztest.Snapshot(t, "emptypackage", map[string]string{
		"blocked/mallory.rego": "package blocked\n\nmallory := true\n",
		"blocked/eve.rego":     "package blocked.eve\n",
		"authz.rego":           "package authz\n\nallow if not data.blocked[input.subject.id]\n",
	}, nil)
	wantTopdownDenies(t, snap, "package with no rules", authz.Request{Subject: &authz.Subject{Type: "user", ID: "eve"}, Action: authz.Action{Name: "read"}})
}

// TestEvaluatorNumberInDataNamed: a number in the data written otherwise
// than its plain form leaves the snapshot to topdown, and the reason names
// where it is, as it does for one in a policy's file.
func TestEvaluatorNumberInDataNamed(t *testing.T) {
	snap := authztest.Snapshot(t, "datanumber", map[string]string{"authz.rego": "package authz\n\nallow := true\n"},
		map[string]any{"a": map[string]any{"b": []any{1, 2, map[string]any{"price": json.Number("19.90")}}}})
	e := newEngine(t, authz.Options{}, snap)
	wantTopdown(t, e, "data.a.b[2].price is 19.90")
}

// TestEvaluatorWithFunctionByRule: a function replaced by a rule that is
// not one (with is_admin as flag, flag false): topdown holds the call
// whatever the rule is, so `not is_admin(...) with is_admin as flag`
// denies; the compiled evaluator evaluated flag and allowed. Such a
// snapshot is now served by topdown. See
// TestDivergenceWithFunctionByRuleOrVariable in internal/plan.
func TestEvaluatorWithFunctionByRule(t *testing.T) {
	snap := authztest.Snapshot(t, "withrule", map[string]string{
		"authz.rego": "package authz\n\nis_admin(s) := s == \"root\"\n\nflag := false\n\nallow if not is_admin(input.subject.id) with is_admin as flag\n",
	}, nil)
	wantTopdownDenies(t, snap, "replacing a function by a rule", authz.Request{Action: authz.Action{Name: "read"}})
}

// TestEvaluatorBlockNegationStaleCondition: a negated body holding an
// iteration (not { ... }, import future.keywords.not) beside another rule
// body. OPA's planner tests whether the body succeeded with a register it
// never clears, numbered like one the first body sets (input.action.name
// there), so the compiled evaluator took the inner body for a success and
// allowed a request topdown denies. The snapshot stays compiled; the
// register is cleared before the body runs. See
// TestDivergenceBlockNegationStaleCondition in internal/plan.
func TestEvaluatorBlockNegationStaleCondition(t *testing.T) {
	policy := "package authz\n\nimport future.keywords.not\n\nallow if input.action.name == \"admin\"\n\n" +
		"allow if {\n\tnot {\n\t\tnot {input.resource.tags[_] == \"public\"}\n\t\tinput.action.name == \"read\"\n\t}\n}\n"
	for _, tc := range []struct {
		action string
		tags   []any
		want   bool
	}{
		{action: "read", tags: []any{"internal"}},
		{action: "read", tags: []any{"public"}, want: true},
		{action: "write", tags: []any{"internal"}, want: true},
	} {
		for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
			e := newEngine(t, authz.Options{DecisionCacheSize: -1, Evaluator: ev}, authztest.Policy(t, "blocknot", policy))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: tc.action}, Resource: map[string]any{"tags": tc.tags}})
			if err != nil || d.Allow != tc.want {
				t.Errorf("%s %s %v: allow=%v (%v), want %v", ev, tc.action, tc.tags, d.Allow, err, tc.want)
			}
			if n := e.Status().EvaluatorFallbacks; n != 0 {
				t.Errorf("%s %s %v: %d fallbacks, want 0", ev, tc.action, tc.tags, n)
			}
		}
	}
}

// TestEvaluatorBlockNegationNeverSatisfiable: a negated body that can never
// succeed (it unifies literals of different shapes, which OPA's type
// checker does not look for inside a negated body) beside another rule
// body. The planner plans no statement that sets the body's condition
// register, and the compiled evaluator cleared the register only where it
// found one, so the register kept the first body's value (input.action.name
// there): the inner negation failed, the outer one held, and a request
// topdown denies was allowed. The snapshot stays compiled; the register is
// cleared before the body runs. See
// TestDivergenceBlockNegationNeverSatisfiable in internal/plan.
func TestEvaluatorBlockNegationNeverSatisfiable(t *testing.T) {
	policy := "package authz\n\nimport future.keywords.not\n\nallow if input.action.name == \"admin\"\n\n" +
		"allow if {\n\tnot {\n\t\tnot {[input.action.name] = [\"read\", \"list\"]}\n\t}\n}\n"
	for _, tc := range []struct {
		action string
		want   bool
	}{
		{action: "read"},
		{action: "write"},
		{action: "admin", want: true},
	} {
		for _, ev := range []authz.Evaluator{authz.EvaluatorCompiled, authz.EvaluatorTopdown} {
			e := newEngine(t, authz.Options{DecisionCacheSize: -1, Evaluator: ev}, authztest.Policy(t, "blocknot", policy))
			d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: tc.action}})
			if err != nil || d.Allow != tc.want {
				t.Errorf("%s %s: allow=%v (%v), want %v", ev, tc.action, d.Allow, err, tc.want)
			}
			if n := e.Status().EvaluatorFallbacks; n != 0 {
				t.Errorf("%s %s: %d fallbacks, want 0", ev, tc.action, n)
			}
		}
	}
}

// TestEvaluatorWithFunctionByValueWithVariablesBesideBody: a with replacing
// a function by an array holding a variable (not blocked with f as [x]),
// reached through a rule with another body. The planner plans x, out of
// scope there, as a register nothing sets; the other body sets a register
// of that number (to input.resource.label), and the compiled evaluator read
// f as [label] where topdown reads [action]: allowed a request topdown
// denies. Such a policy is now served by topdown. See
// TestDivergenceWithFunctionByValueWithVariablesBesideBody in internal/plan.
func TestEvaluatorWithFunctionByValueWithVariablesBesideBody(t *testing.T) {
	policy := "package authz\n\nf(_) := []\n\n" +
		"blocked if {\n\ta := input.resource.owner\n\tb := input.resource.label\n\tc := input.action.name\n\ta == c\n\tb == 1\n}\n\n" +
		"blocked if \"blocked\" in f(input.resource.owner)\n\n" +
		"allow if {\n\tx := input.action.name\n\tnot blocked with f as [x]\n}\n"
	req := authz.Request{Action: authz.Action{Name: "blocked"}, Resource: map[string]any{"owner": "u", "label": "other"}}
	wantTopdownDenies(t, authztest.Policy(t, "withvalue", policy), "never sets", req)
}

// TestEvaluatorNegatedUnificationNeverHolds: a negated unification of
// literals of different shapes in an every (not [x] = ["public",
// input.action.name]), which never holds. The planner plans nothing past
// it, so the compiled evaluator's negation failed, every failed, and
// `allow if not ok` allowed a request topdown denies. Such a policy is now
// served by topdown. See TestDivergenceNegatedUnificationNeverHolds in
// internal/plan.
func TestEvaluatorNegatedUnificationNeverHolds(t *testing.T) {
	policy := "package authz\n\nok if {\n\tevery x in input.resource.tags {\n\t\tnot [x] = [\"public\", input.action.name]\n\t}\n}\n\nallow if not ok\n"
	req := authz.Request{Action: authz.Action{Name: "read"}, Resource: map[string]any{"tags": []any{"internal"}}}
	wantTopdownDenies(t, authztest.Policy(t, "neverunifies", policy), "negated unification", req)
}
