package authz

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"golang.org/x/net/http/httpguts"
)

// evaluate runs the prepared query and reads the policy contract from it.
// A non-nil x traces the evaluation for an explanation.
func (e *Engine) evaluate(ctx context.Context, cp *compiled, input ast.Value, now time.Time, x *explainer, d *Decision) error {
	deadline := time.Now().Add(e.evalTimeout)
	var result ast.Object
	handled := false
	if cp.plan != nil && x == nil {
		var err error
		if result, handled, err = e.evaluatePlan(ctx, cp.plan, input, now); err != nil {
			return err
		}
	}
	if !handled {
		// Topdown has what is left of the evaluation time.
		ctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		var err error
		if result, err = e.evaluateTopdown(ctx, cp, input, now, x); err != nil {
			return err
		}
	}
	if result == nil {
		return Refusef(ErrPolicy, "the entry query returned no decision")
	}
	return e.readDecision(result, d)
}

// evaluateTopdown evaluates input with OPA's topdown evaluator, tracing
// for an explanation when x is not nil, and returns the decision object
// (nil when the query is undefined).
//
// A panic during the evaluation is a policy error: some of OPA's built-in
// functions panic on arguments a request can supply (bits.lsh with a huge
// shift count), and no request may take the process down. It is logged
// with its stack.
func (e *Engine) evaluateTopdown(ctx context.Context, cp *compiled, input ast.Value, now time.Time, x *explainer) (result ast.Object, err error) {
	defer func() {
		if p := recover(); p != nil {
			e.log.LogAttrs(ctx, slog.LevelError, "policy evaluation panicked",
				slog.String("panic", fmt.Sprint(p)), slog.String("stack", string(debug.Stack())))
			result, err = nil, Refusef(ErrPolicy, "evaluation panicked: %v", p)
		}
	}()
	// One cancel hook per evaluation instead of OPA's watcher goroutine.
	cancel := topdown.NewCancel()
	defer context.AfterFunc(ctx, cancel.Cancel)()
	opts := []rego.EvalOption{
		rego.EvalParsedInput(input),
		rego.EvalTime(now),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()),
		rego.EvalGenerateJSON(keepTerm),
	}
	if x != nil {
		opts = append(opts, rego.EvalQueryTracer(x))
	}
	if e.print != nil {
		opts = append(opts, rego.EvalPrintHook(e.print))
	}
	heap := watchHeap(e.heapLimit, cancel)
	defer heap.end()
	rs, err := cp.query.Eval(ctx, opts...)
	if heap.end() && ctx.Err() == nil { // else cut short, below
		return nil, e.heapStopped()
	}
	if err != nil {
		if r := cutShort(ctx, err); r != nil {
			return nil, r
		}
		return nil, RefuseWith(ErrPolicy, err)
	}
	if len(rs) > 0 && len(rs[0].Expressions) > 0 {
		if t, ok := rs[0].Expressions[0].Value.(*ast.Term); ok {
			result, _ = t.Value.(ast.Object)
		}
	}
	return result, nil
}

// readDecision reads the policy contract (allow, reasons, headers) from
// the decision object into d.
func (e *Engine) readDecision(result ast.Object, d *Decision) error {
	reasons, err := stringList(result.Get(keyReasons))
	if err != nil {
		return Refusef(ErrPolicy, "data.%s.reasons: %v", e.entry, err)
	}
	allowValue := result.Get(keyAllow)
	allow := allowValue != nil && allowValue.Value.Compare(ast.Boolean(true)) == 0
	if allow {
		headers, err := headerMap(result.Get(keyHeaders))
		if err != nil {
			return Refusef(ErrPolicy, "data.%s.headers: %v", e.entry, err)
		}
		d.Headers = headers
	}
	if !allow && len(reasons) == 0 {
		if _, undefined := allowValue.Value.(ast.Null); undefined {
			reasons = []string{"policy: allow is undefined"}
		} else {
			reasons = []string{"policy: allow is not true"}
		}
	}
	d.Allow, d.Reasons = allow, reasons
	return nil
}

// keepTerm hands OPA's result term back as it is, skipping the conversion
// to Go values that the engine would only undo.
func keepTerm(t *ast.Term, _ *rego.EvalContext) (any, error) { return t, nil }

var (
	keyAllow   = ast.InternedTerm("allow")
	keyReasons = ast.InternedTerm("reasons")
	keyHeaders = ast.InternedTerm("headers")
)

// stringList reads reasons: null (undefined), a set (sorted) or an array of
// strings.
func stringList(t *ast.Term) ([]string, error) {
	if t == nil {
		return nil, nil
	}
	var arr *ast.Array
	switch v := t.Value.(type) {
	case ast.Null:
		return nil, nil
	case ast.Set:
		arr = v.Sorted()
	case *ast.Array:
		arr = v
	default:
		return nil, fmt.Errorf("must be a set or array of strings, got %s", ast.ValueName(v))
	}
	out := make([]string, 0, arr.Len())
	for i := range arr.Len() {
		s, ok := arr.Elem(i).Value.(ast.String)
		if !ok {
			return nil, fmt.Errorf("must contain only strings, got %s", ast.ValueName(arr.Elem(i).Value))
		}
		out = append(out, string(s))
	}
	return out, nil
}

// framingHeaders are the headers a decision may not set: they describe the
// message or the connection that carries it (hop-by-hop, RFC 9110 7.6.1),
// not the request, and a forward-auth answer carrying the policy's
// Content-Length, say, is a broken response. Names are lower case, as
// headerMap compares them.
var framingHeaders = map[string]bool{"connection": true, "content-length": true, "host": true, "keep-alive": true,
	"proxy-authenticate": true, "proxy-authorization": true, "proxy-connection": true, "te": true, "trailer": true,
	"trailers": true, "transfer-encoding": true, "upgrade": true}

// decisionIDHeader is the header the fronts carry a decision's ID in; a
// policy's is left out of its headers.
const decisionIDHeader = "x-verdict-decision-id"

// headerMap reads the policy's headers, refusing names and values that are
// not valid HTTP (a value with CR or LF could inject headers downstream),
// values that are not UTF-8, and the framing headers; X-Verdict-Decision-Id
// is left out.
func headerMap(t *ast.Term) (map[string]string, error) {
	if t == nil {
		return nil, nil
	}
	if _, ok := t.Value.(ast.Null); ok {
		return nil, nil
	}
	obj, ok := t.Value.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("must be an object of strings, got %s", ast.ValueName(t.Value))
	}
	out := make(map[string]string, obj.Len())
	// Header names match whatever their case (x-user and X-User are one
	// header), compared in lower case. Two names in lower case differ, so
	// names with capitals are kept aside (seen), when there are any: the
	// names policies write, in lower case, cost nothing.
	var seen map[string]string
	if obj.Until(func(k, _ *ast.Term) bool {
		s, _ := k.Value.(ast.String)
		return strings.ToLower(string(s)) != string(s)
	}) {
		seen = map[string]string{}
	}
	err := obj.Iter(func(k, v *ast.Term) error {
		name, ok := k.Value.(ast.String)
		if !ok {
			return fmt.Errorf("header names must be strings, got %s", ast.ValueName(k.Value))
		}
		value, ok := v.Value.(ast.String)
		if !ok {
			return fmt.Errorf("%q must be a string, got %s", string(name), ast.ValueName(v.Value))
		}
		if !httpguts.ValidHeaderFieldName(string(name)) {
			return fmt.Errorf("%q is not a valid header name", string(name))
		}
		lower := strings.ToLower(string(name))
		if framingHeaders[lower] {
			return fmt.Errorf("%q frames the message, it does not describe the request: a decision may not set it", string(name))
		}
		if lower == decisionIDHeader {
			return nil // the decision's own ID is Verdict's to say, on every front
		}
		// One header named twice: which value reached the client was the
		// map's order's to say.
		other, twice := seen[lower]
		if _, ok := out[lower]; ok && lower != string(name) {
			other, twice = lower, true
		}
		if twice {
			return fmt.Errorf("%q and %q are one header", other, string(name))
		}
		if lower != string(name) {
			seen[lower] = string(name)
		}
		if !httpguts.ValidHeaderFieldValue(string(value)) {
			return fmt.Errorf("%q has a value that is not a valid header value", string(name))
		}
		// An ext_authz answer (protobuf) cannot carry a value that is not
		// UTF-8, and JSON would change it; a policy makes one from a
		// client's bytes (urlquery.decode of %FF).
		if !utf8.ValidString(string(value)) {
			return fmt.Errorf("%q has a value that is not UTF-8", string(name))
		}
		out[string(name)] = string(value)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
