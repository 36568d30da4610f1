package authz_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// TestNoNetwork: with Options.NoNetwork, Load refuses a policy that calls
// a built-in function reaching the network, as a problem at each call,
// however the call is written; a policy without one loads.
func TestNoNetwork(t *testing.T) {
	e, err := authz.New(authz.Options{NoNetwork: true})
	if err != nil {
		t.Fatal(err)
	}
	for name, src := range map[string]string{
		"a statement":                            "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"})\n",
		"a nested call":                          "package authz\n\nallow if count(net.lookup_ip_addr(input.resource.host)) > 0\n",
		"an assignment":                          "package authz\n\nallow if {\n\tr := http.send({\"method\": \"GET\", \"url\": input.resource.url})\n\tr.status_code == 200\n}\n",
		"a with's value":                         "package authz\n\nf(_) := true\n\nallow if f(1) with f as http.send\n",
		"a function's body":                      "package authz\n\nget(u) := http.send({\"method\": \"GET\", \"url\": u})\n\nallow if get(\"http://192.0.2.1\")\n",
		"a schema's $ref":                        "package authz\n\nallow if json.match_schema({}, {\"$ref\": \"http://192.0.2.1/s\"})[0]\n",
		"a verified schema":                      "package authz\n\nallow if json.verify_schema({\"$ref\": \"file:///etc/passwd\"})[0]\n",
		"a call in a with's value":               "package authz\n\nallow if {\n\tinput.x with input.x as http.send({\"method\": \"POST\", \"url\": \"http://192.0.2.1\", \"body\": input})\n}\n",
		"a call in a with's comprehension":       "package authz\n\ng := 1\n\nallow if {\n\tdata.authz.g with data.authz.g as [r | r := http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"})]\n}\n",
		"a call in a with's value beside a mock": "package authz\n\nallow if {\n\tinput.x with http.send as {} with input.x as http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"})\n}\n",
		"a call under another with":              "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"}) with input as {}\n",
	} {
		err := e.Load(t.Context(), authztest.Policy(t, name, src))
		var ce *authz.CompileError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 || ce.Problems[0].Code != "verdict_network_error" || ce.Problems[0].Line == 0 {
			t.Errorf("%s: Load = %v, want one located verdict_network_error", name, err)
		}
	}
	if err := e.Load(t.Context(), authztest.Policy(t, "plain", "package authz\n\nallow if input.action.name == \"read\"\n")); err != nil {
		t.Errorf("a policy without network calls: %v", err)
	}
	open, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := open.Load(t.Context(), authztest.Policy(t, "net", "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"})\n")); err != nil {
		t.Errorf("without NoNetwork: %v", err)
	}
}

// TestModuleNames: a snapshot holding two modules of one name, or one named
// like the engine's own entry module, is refused: the second would replace
// the first (or the engine's) without a word.
func TestModuleNames(t *testing.T) {
	e, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	twice := authztest.Policy(t, "twice", "package authz\n\nallow := true\n")
	twice.Modules = append(twice.Modules, bundles.Module{Path: "policy.rego", Raw: []byte("package authz\n\nallow if input.action.name == \"x\"\n")})
	reserved := authztest.Policy(t, "reserved", "package authz\n\nallow := true\n")
	reserved.Modules = append(reserved.Modules, bundles.Module{Path: "verdict:verdict_entrypoint", Raw: []byte("package other\n\nx := 1\n")})
	for name, snap := range map[string]*bundles.Snapshot{"two of one name": twice, "a reserved name": reserved} {
		var ce *authz.CompileError
		if err := e.Load(t.Context(), snap); !errors.As(err, &ce) {
			t.Errorf("%s: Load = %v, want a CompileError", name, err)
		}
	}
}

// TestCallerCertificateWithoutRaw: a caller certificate built in code,
// without its DER encoding, is refused: the decision cache keys callers by
// that encoding, and two such certificates (svc-a, then svc-b) shared a
// key, the second answered with the first's allow.
func TestCallerCertificateWithoutRaw(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "cert",
		"package authz\n\nallow if input.caller.id == \"svc-a\"\n"))
	for _, cn := range []string{"svc-a", "svc-b"} {
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"},
			Caller: authz.Caller{Certificate: &x509.Certificate{Subject: pkix.Name{CommonName: cn}}}})
		if d.Allow || !errors.Is(err, authz.ErrCaller) {
			t.Errorf("%s without Raw: allow %v, %v; want refused (ErrCaller)", cn, d.Allow, err)
		}
	}
}

// TestRequestValuesNotJSON: a request value JSON cannot hold (NaN, ±Inf,
// a json.Number that is no number) or that OPA's converter panics on (a
// typed nil pointer) is an invalid request: a deny with ErrInvalidRequest,
// not a policy error, nor a panic.
func TestRequestValuesNotJSON(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "amount", "package authz\n\nallow if input.resource.amount < 100\n"))
	for name, v := range map[string]any{
		"NaN":              math.NaN(),
		"+Inf":             math.Inf(1),
		"nested -Inf":      []any{map[string]any{"x": math.Inf(-1)}},
		"json.Number NaN":  json.Number("NaN"),
		"json.Number text": json.Number(`"5"`),
		"padded number":    json.Number(" 5"),
		"typed nil":        (*string)(nil),
		"pointer to NaN":   func() *float64 { n := math.NaN(); return &n }(),
		"huge":             json.Number("1e999999999"),
	} {
		d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "pay"}, Resource: map[string]any{"amount": v}})
		if d.Allow || !errors.Is(err, authz.ErrInvalidRequest) {
			t.Errorf("%s: allow %v, %v; want an invalid request", name, d.Allow, err)
		}
	}
	if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "pay"}, Resource: map[string]any{"amount": json.Number("5")}}); !d.Allow || err != nil {
		t.Errorf("a plain number: allow %v, %v", d.Allow, err)
	}
	// EvaluateInput takes the same care of a whole document.
	for name, doc := range map[string]any{
		"NaN":       map[string]any{"resource": map[string]any{"amount": math.NaN()}},
		"typed nil": (*map[string]any)(nil),
	} {
		if d, err := e.EvaluateInput(t.Context(), doc, authz.InputOptions{}); d.Allow || !errors.Is(err, authz.ErrInvalidRequest) {
			t.Errorf("EvaluateInput %s: allow %v, %v; want an invalid request", name, d.Allow, err)
		}
	}
}

// TestRequestValuesCyclic: a map or slice that holds itself (an embedding
// program's mistake) is an invalid request; before, converting it recursed
// until the stack overflowed and the process died. A value nested deep but
// within the bound still converts.
func TestRequestValuesCyclic(t *testing.T) {
	e := newEngine(t, authz.Options{}, authztest.Policy(t, "deep", "package authz\n\nallow if input.resource.ok\n"))
	selfMap := map[string]any{"ok": true}
	selfMap["again"], selfMap["twice"] = selfMap, selfMap
	selfSlice := []any{1, nil}
	selfSlice[1] = selfSlice
	deep := map[string]any{"ok": true}
	for range maxDepthUnder {
		deep = map[string]any{"ok": true, "in": deep}
	}
	tooDeep := map[string]any{"ok": true}
	for range maxDepthUnder + 10 {
		tooDeep = map[string]any{"ok": true, "in": []any{tooDeep}}
	}
	selfObject := ast.NewObject()
	selfObject.Insert(ast.StringTerm("self"), ast.NewTerm(selfObject))
	for name, tc := range map[string]struct {
		req  authz.Request
		want bool // allowed, else refused as invalid
	}{
		"cyclic map": {authz.Request{Resource: selfMap}, false},
		// An ast.Value is taken as it is: it is walked too.
		"cyclic AST object": {authz.Request{Resource: map[string]any{"ok": true, "v": selfObject}}, false},
		"cyclic slice":      {authz.Request{Resource: map[string]any{"ok": true}, Attributes: map[string]any{"s": selfSlice}}, false},
		"too deep":          {authz.Request{Resource: tooDeep}, false},
		"deep":              {authz.Request{Resource: deep}, true},
	} {
		tc.req.Action = authz.Action{Name: "read"}
		d, err := e.Decide(t.Context(), tc.req)
		if tc.want && (!d.Allow || err != nil) {
			t.Errorf("%s: allow %v, %v; want allowed", name, d.Allow, err)
		}
		if !tc.want && (d.Allow || !errors.Is(err, authz.ErrInvalidRequest)) {
			t.Errorf("%s: allow %v, %v; want an invalid request", name, d.Allow, err)
		}
	}
	if d, err := e.EvaluateInput(t.Context(), map[string]any{"resource": selfMap}, authz.InputOptions{}); d.Allow || !errors.Is(err, authz.ErrInvalidRequest) {
		t.Errorf("EvaluateInput of a cyclic map: allow %v, %v; want an invalid request", d.Allow, err)
	}
}

// TestSnapshotDataCyclic: a snapshot whose Data holds itself (built in Go
// by an embedding program) is refused by Load, Compile and RunTests as a
// CompileError, and the serving snapshot keeps serving; it overflowed the
// stack when compiled, a fatal error no recover catches, which ended the
// process. Data nested as deep as a data file can be still loads.
func TestSnapshotDataCyclic(t *testing.T) {
	const rego = "package authz\n\nallow if data.authz_data.ok\n"
	selfMap := map[string]any{"ok": true}
	selfMap["again"] = selfMap
	selfSlice := []any{1, nil}
	selfSlice[1] = selfSlice
	selfObject := ast.NewObject()
	selfObject.Insert(ast.StringTerm("self"), ast.NewTerm(selfObject))
	deep := map[string]any{"ok": true}
	for range 5000 { // 10000 levels, the JSON decoder's bound
		deep = map[string]any{"ok": true, "in": []any{deep}}
	}
	snap := func(data map[string]any) *bundles.Snapshot {
		s := authztest.Policy(t, "data", rego)
		s.Data = map[string]any{"authz_data": data}
		return s
	}
	e := newEngine(t, authz.Options{}, snap(map[string]any{"ok": true}))
	for name, data := range map[string]map[string]any{
		"cyclic map":        selfMap,
		"cyclic slice":      {"ok": true, "s": selfSlice},
		"cyclic AST object": {"ok": true, "o": selfObject},
	} {
		var ce *authz.CompileError
		if err := e.Load(t.Context(), snap(data)); !errors.As(err, &ce) {
			t.Errorf("%s: Load = %v, want a CompileError", name, err)
		}
		if _, err := authz.Compile(snap(data), authz.CompileOptions{}); !errors.As(err, &ce) {
			t.Errorf("%s: Compile = %v, want a CompileError", name, err)
		}
		if _, err := authz.RunTests(t.Context(), snap(data), authz.TestOptions{}); !errors.As(err, &ce) {
			t.Errorf("%s: RunTests = %v, want a CompileError", name, err)
		}
	}
	if d, err := e.Decide(t.Context(), authz.Request{Action: authz.Action{Name: "read"}}); !d.Allow || d.Revision != "data" {
		t.Errorf("after the refusals: %+v, %v; want the first snapshot's allow", d, err)
	}
	if err := e.Load(t.Context(), snap(deep)); err != nil {
		t.Errorf("data nested 10000 levels: Load = %v, want it loaded", err)
	}
}

// maxDepthUnder is a nesting the engine converts: the bound is 1000 levels.
const maxDepthUnder = 990

// TestNoNetworkMockedCalls: a call that a with on its own expression, or
// on an expression around it, replaces by a mock is no call to the network
// (http.send(req) with http.send as mock, in a test); it was refused, so
// tests that mocked http.send needed --allow-net.
func TestNoNetworkMockedCalls(t *testing.T) {
	const policy = "package authz\n\nallow := true\n"
	for name, test := range map[string]string{
		"on its expression": "package authz_test\n\ntest_mock if {\n\tr := http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"}) with http.send as {\"status_code\": 200}\n\tr.status_code == 200\n}\n",
		"around it":         "package authz_test\n\ntest_mock if {\n\tcount([r | r := http.send({\"method\": \"GET\", \"url\": \"http://192.0.2.1\"})]) == 1 with http.send as {\"status_code\": 200}\n}\n",
	} {
		snap := authztest.Snapshot(t, name, map[string]string{"authz/p.rego": policy, "authz/p_test.rego": test}, nil)
		run, err := authz.RunTests(t.Context(), snap, authz.TestOptions{NoNetwork: true})
		if err != nil || run.Failed() || len(run.Results) != 1 {
			t.Errorf("%s: %v, %+v; want the mocked test to run and pass", name, err, run)
		}
	}
}
