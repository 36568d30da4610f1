// Package plan evaluates Rego queries from OPA's own query plans, several
// times faster than OPA's tree-walking evaluator (topdown) and with a few
// times fewer allocations, giving the same answers.
//
// # How
//
// OPA plans a query into its intermediate representation (package
// github.com/open-policy-agent/opa/v1/ir): functions made of blocks of
// simple statements over numbered registers (locals), one function per
// rule set, with calls, lookups, scans and negation; the plan its Wasm
// compiler consumes. The public route to the planner is a rego evaluation
// target: Prepare asks rego to prepare the query for a target this package
// registers, and rego hands the target's plugin the plan (target.go).
//
// Prepare checks the plan and compiles it once (compile.go): every operand
// resolved to a register or a constant term built in advance, every call
// to a planned function or to OPA's own implementation of a built-in
// function (topdown.GetBuiltin: no built-in is re-implemented here), and
// composite literals folded into one instruction that builds the value at
// its size, or into a constant shared by every evaluation when nothing can
// modify it (literal.go). Eval runs the instructions (eval.go, exec.go) with
// registers from a per-query pool, memoizing the rules without arguments
// for the evaluation (apart inside `with`, as topdown does), and stops when
// its context ends or its topdown.Cancel is cancelled.
//
// Statement semantics are those of OPA's Wasm compiler, the reference
// consumer of the plan: a statement that is undefined ends its block, a
// BreakStmt ends as many enclosing blocks as its index says (a ScanStmt
// counts twice: the loop and the statement), and an undefined rule reached
// through a CallDynamicStmt ends the lookup's block. There is one
// deliberate exception: the planner nests the rest of a query inside the
// block of a lookup by path, and the Wasm compiler then takes an undefined
// statement there for success when the lookup is negated (not
// o[input.x] with o[input.x] false); here the undefinedness carries to the
// enclosing block, as topdown's answer requires (isDynamicLookup). Where
// the Wasm runtime's values differ from OPA's (object and set iteration
// order, number precision), this package uses OPA's Go values, as topdown
// does.
//
// # Same answers, or none
//
// An answer Eval gives is the one topdown gives. Where that cannot be
// promised, Prepare or Eval refuses with an error wrapping ErrUnsupported,
// and the caller asks topdown. Prepare looks only at the rules the query
// can reach (through calls, lookups, whole reads and the values of with
// statements), so that a library the query does not use keeps nothing
// from the compiled evaluator:
//
//   - Prepare refuses what the planner refuses, a built-in function with no
//     Go implementation, a base document with data.system (which topdown
//     hides when it reads the whole of data), a comprehension topdown
//     indexes (evaluates ahead, for every key) whose body may fail, since
//     topdown could then fail where the plan does not (a body that reads
//     a key before binding it fails there, its key unbound), an iteration
//     over (or a whole read of) a document holding both base data (an
//     array too) and rules (a with on data counting as base data, and a package's
//     declaration as a whole read of it, so that a with on a rule of a
//     package is always refused: the planner re-plans what such a with
//     reaches with parts of the rule tree hidden), whose keys topdown
//     and the plan enumerate in different orders,
//     the negation of a reference the planner enumerates (not
//     data.p.rules[x] with rules at different depths), which the plan
//     spells so that only the base document can decide it
//     (checkNegatedEnumerations), and a rule body or else branch that
//     reads a register it never sets (checkUnboundLocals): the planner
//     plans the value of a with replacing a function by a composite value
//     holding variables (g with f as [x], g calling f) inside the rules
//     the replacement reaches, where x is out of scope, so the plan's f is
//     undefined where topdown's is [x], or whatever another body of the
//     rule left in the register; and an expression whose with statements
//     replace a function before a with on input or data
//     (checkWithOrder: q with upper as 1 with data.a.q as true): the
//     planner writes the value into the document of the with statement at
//     the same place among all of them, here input, so data.a.q is not
//     replaced; and a with replacing a function of a package, or replacing
//     a function by one, when a with anywhere replaces a document above it
//     (data.a.f under data.a, checkShadowedFunctionWith): under the outer
//     with the planner finds no function at data.a.f, so it plans a
//     replacement of it as a with on data (data.a then holds f, and the
//     expression's other values are paired with the wrong documents) and
//     a replacement by it as a replacement by the value data.a.f; and a
//     lookup by path (blocked[input.a].c) that reaches a node of the rule
//     tree with rules below it but none of its own, beside a rule with a
//     variable in its head (checkDroppedLookupRules): the planner leaves
//     that node out of the lookup; and rules that can build one document
//     at two depths (t[k] := {"b": 1} beside t.a.b := 1,
//     checkNestedRuleRefs), which topdown refuses as a conflict even where
//     the values agree; and a set literal with elements that are not
//     constants, or an object literal with such keys, anywhere but as an
//     argument of a built-in function (checkLiteralsWrittenWithVariables):
//     topdown enumerates it as written, in the order of its terms and with
//     elements that turn out equal visited twice, also through rules,
//     variables and function arguments; and a call of a function with an
//     else or a default whose output may be bound before the call (s
//     contains f(y), looked up as s["1"]; f(x, "1"); a function whose
//     value is such a call's, checkBoundFunctionOutputs): topdown goes on
//     to the else or the default when a body's value does not match the
//     bound output; and a with replacing a function by one that reaches a
//     function or built-in some with replaces, when the query also reaches
//     that replacement other than through a with
//     (checkReplacementReachesMock): topdown runs a replacement with no
//     replacement in force, and the planner plans it once for both uses;
//     and a negated unification of literals of different shapes (not [x]
//     = [1, 2] in an every, checkNegatedUnificationNeverHolds): the
//     planner plans nothing past it, and the negation fails where
//     topdown's holds.
//   - Eval refuses a lookup in the base document that the language's values
//     miss and OPA's store finds (data.users[1] with a key "1"): topdown
//     answers those either way depending on how it evaluates the reference.
//   - Eval refuses an object literal whose keys turn out equal at
//     evaluation ({input.x: 1, "a": 2} with input.x "a"): the planner
//     orders a literal's keys its own way, and topdown keeps the first or
//     the last value depending on how the keys are written.
//   - Eval refuses an input holding a number written otherwise than its
//     plain form (1.0, 1e0, 1.50), and Prepare a base document or a policy
//     holding one: topdown lets equal numbers written differently stand in
//     for each other (a variable unified with a constant is the constant,
//     a function call or a lookup into a partial set is answered from an
//     earlier one with an equal argument), and a rule keyed by a number,
//     found by how its key is written, then tells the evaluators apart.
//   - Eval refuses a lookup by a number written otherwise than the object's
//     key (o[1.0] where o has the key 1): topdown finds a rule's key by
//     how it is written, a value's by its value; and an object given one
//     key twice with equal values written differently (1 and 1.0): topdown
//     keeps the last in an object comprehension, the first in a partial
//     object rule.
//   - Eval refuses a with on data whose value, an object, lacks a key of
//     the base document's object it replaces, when the plan reads the base
//     document whole above the with's target (data.d with data.d.m as
//     {"q": 1}): topdown reads a document above the target as the value
//     merged with the base document, the target and below as the value
//     alone; and a with on data below a document that an enclosing with
//     replaced by something other than an object, read from above both
//     (nonObjectAt): topdown's overlay of with values turns the replacement
//     into an object and merges it with the base document.
//   - Eval refuses a lookup by path (o[input.a]) among rules the planner
//     re-planned under a with replacing a function by a variable (with
//     count as n): the rules take n as an extra argument, which the lookup
//     does not pass.
//   - Eval wraps every evaluation error (a conflict, a built-in function's
//     error under EvalOptions.StrictBuiltinErrors) in the same way, with
//     topdown's *topdown.Error inside: topdown's rule indexes skip bodies
//     and its early exit stops at a first value, so it may never meet an
//     error the plan meets.
//
// A panic in OPA's planner (it panics on a few policies its compiler
// accepts) is a refusal of Prepare too.
//
// Cancellation is the one error that is final.
//
// # Checked against
//
// The tests run OPA's compliance suite (the cases OPA runs against topdown
// and its Wasm compiler; testdata/compliance.txt lists what is refused),
// compare both evaluators on every case in OPA's default mode and with
// strict built-in errors, run the Rego tests of the default policy set,
// its example and the policies in testdata/policies on both, and fuzz both
// with generated inputs (FuzzDifferential) and generated policies
// (FuzzPolicy).
package plan
