package authz_test

import (
	"context"
	"path/filepath"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

// readsetPolicy is the snapshot of testdata/readset/<file>, its module
// named by the file.
func readsetPolicy(t testing.TB, file string) *bundles.Snapshot {
	t.Helper()
	return authztest.PolicyFile(t, filepath.Join("testdata", "readset", file))
}

// TestDecisionCacheKeys: what each policy reads of its input, as the
// decision cache keys on it (Status.DecisionCache), or why its decisions
// are keyed on the whole request, or not cached.
func TestDecisionCacheKeys(t *testing.T) {
	tests := []struct {
		name string
		file string // in testdata/readset; or
		rego string // inline, as policy.rego; or the default policies
		want string
	}{
		{name: "default policies", want: "on: keyed on input.subject.authenticated, input.subject.claims.roles, input.subject.id, " +
			"input.caller.authenticated, input.caller.id, input.action.method, input.action.name, input.action.segments[0]"},
		{name: "action name only", rego: "package authz\n\nallow if input.action.name == data.x\n", want: "on: keyed on input.action.name"},
		{name: "reads nothing", file: "reads_nothing.rego", want: "on: keyed on nothing: the policy reads no input"},
		{name: "method and first segment", file: "method_and_route.rego", want: "on: keyed on input.action.method, input.action.segments[0]"},
		{name: "resource owner", file: "resource_owner.rego", want: "on: keyed on input.subject.id, input.resource.owner"},
		{name: "caller claim", file: "caller_claims.rego", want: "on: keyed on input.caller.claims.scope"},
		{name: "function reading input", file: "function_reads_input.rego", want: "on: keyed on input.subject.claims.roles"},
		{name: "object.get with a constant path", file: "object_get_constant_path.rego", want: "on: keyed on input.subject.claims.roles, input.resource.id"},
		{name: "object.get on a member that may not be an object", file: "object_get_nested.rego",
			want: "on: keyed on input.subject.id, type of input.resource.meta, input.resource.meta.owner"},
		{name: "object.get with a computed path", file: "object_get_dynamic_path.rego", want: "on: keyed on input.action.name, input.resource"},
		{name: "input value held in a variable", file: "variable_paths.rego", want: "on: keyed on input.subject.claims.roles, input.subject.claims.tenant"},
		{name: "data ref with a computed key", file: "data_computed_key.rego",
			want: "on: keyed on input.subject.id, input.caller.authenticated, input.action.name, input.resource.owner"},
		{name: "whole action", file: "whole_action.rego", want: "on: keyed on input.action"},
		{name: "clock read by an unreachable rule", file: "time_now_unreachable.rego", want: "on: keyed on input.action.name"},
		{name: "echo of what it reads", file: "echo.rego",
			want: "on: keyed on input.subject.claims.roles, input.subject.claims.tenant, input.subject.id, input.subject.properties.dept, input.caller.id, " +
				"input.caller.spiffe_id, input.action.method, input.action.segments[0], input.action.segments[1], input.resource.items, input.resource.meta.owner"},

		{name: "claims with a computed key", file: "claims_computed_key.rego",
			want: "on: keyed on the request: the policy reads all of input.subject.claims (claims_computed_key.rego)"},
		{name: "some k, v in claims", file: "some_kv_claims.rego",
			want: "on: keyed on the request: the policy reads all of input.subject.claims (some_kv_claims.rego)"},
		{name: "whole subject", file: "subject_whole.rego",
			want: "on: keyed on the request: the policy reads all of input.subject (subject_whole.rego)"},
		{name: "variable passed on whole", file: "variable_passed_on.rego",
			want: "on: keyed on the request: the policy reads all of input.subject (variable_passed_on.rego)"},
		{name: "with input as", file: "with_input.rego",
			want: "on: keyed on the request: the policy replaces input with `with` (with_input.rego)"},
		{name: "with input member as", file: "with_input_member.rego",
			want: "on: keyed on the request: the policy replaces input with `with` (with_input_member.rego)"},

		{name: "context time", file: "context_time.rego", want: "off: the policy reads input.context (context_time.rego)"},
		{name: "context through a variable", file: "context_via_variable.rego", want: "off: the policy reads input.context (context_via_variable.rego)"},
		{name: "context attributes", rego: "package authz\n\nallow if input.context.attributes.tenant == \"a\"\n", want: "off: the policy reads input.context (policy.rego)"},
		{name: "time.now_ns", file: "time_now.rego", want: "off: the policy uses time.now_ns (time_now.rego)"},
		{name: "walk(input)", file: "walk_input.rego", want: "off: the policy reads the whole input document (walk_input.rego)"},
		{name: "function called with input", file: "function_with_input.rego", want: "off: the policy reads the whole input document (function_with_input.rego)"},
		{name: "object.get on input with a computed path", file: "object_get_dynamic_input.rego",
			want: "off: the policy reads the whole input document (object_get_dynamic_input.rego)"},
		{name: "computed top-level key", file: "computed_top_level.rego", want: "off: the policy reads the whole input document (computed_top_level.rego)"},
		{name: "print(input)", file: "print_input.rego", want: "off: the policy reads the whole input document (print_input.rego)"},
		{name: "json.marshal(input)", rego: "package authz\n\nallow if json.marshal(input) != \"\"\n", want: "off: the policy reads the whole input document (policy.rego)"},
		{name: "builtin named in with", file: "http_send_in_with.rego", want: "off: the policy uses http.send (http_send_in_with.rego)"},
		{name: "http.send", rego: "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200\n",
			want: "off: the policy uses http.send (policy.rego)"},
		{name: "jwt verification reads the clock", rego: "package authz\n\nallow if io.jwt.decode_verify(input.resource.t, {\"secret\": \"s\"})[0]\n",
			want: "off: the policy uses io.jwt.decode_verify (policy.rego)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var snap *bundles.Snapshot
			switch {
			case tc.file != "":
				snap = readsetPolicy(t, tc.file)
			case tc.rego != "":
				snap = authztest.Policy(t, "r", tc.rego)
			default:
				snap = authztest.DefaultPolicies(t)
			}
			e := newEngine(t, authz.Options{}, snap)
			if got := e.Status().DecisionCache; got != tc.want {
				t.Errorf("DecisionCache:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestDecisionCacheDisabled(t *testing.T) {
	for _, opts := range []authz.Options{{DecisionCacheSize: -1}, {DecisionCacheBytes: -1}} {
		e := newEngine(t, opts, authztest.Policy(t, "r", "package authz\n\nallow := true\n"))
		if got := e.Status().DecisionCache; got != "off: disabled" {
			t.Errorf("%+v: DecisionCache = %q", opts, got)
		}
	}
}

// cacheProbe decides requests and says whether each came from the
// decision cache (the verdict.evaluate span's attribute).
type cacheProbe struct {
	t   *testing.T
	e   *authz.Engine
	rec *tracetest.SpanRecorder
}

func newCacheProbe(t *testing.T, is *authztest.Issuer, snap *bundles.Snapshot) *cacheProbe {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	opts := authz.Options{TracerProvider: tp}
	if is != nil {
		opts.Tokens = token.Options{Issuers: []token.Issuer{is.Config()}}
	}
	return &cacheProbe{t: t, e: newEngine(t, opts, snap), rec: rec}
}

// decide decides req, which must not fail, and reports whether the answer
// came from the decision cache.
func (p *cacheProbe) decide(req authz.Request) (authz.Decision, bool) {
	p.t.Helper()
	d, err := p.e.Decide(p.t.Context(), req)
	if err != nil {
		p.t.Fatalf("Decide: %v", err)
	}
	spans := p.rec.Ended()
	for i := len(spans) - 1; i >= 0; i-- {
		if spans[i].Name() == authz.SpanEvaluate {
			for _, kv := range spans[i].Attributes() {
				if kv.Key == authz.AttrDecisionCacheHit {
					return d, kv.Value.AsBool()
				}
			}
		}
	}
	p.t.Fatal("no verdict.evaluate span")
	return d, false
}

// TestNewTokenForKnownSubjectIsAHit: under the default policies, which read
// the subject's id and roles but not jti, iat or exp, a token never seen
// before is answered from the cache when another token of the same subject
// with the same roles was decided twice (its second use admits the entry);
// another role or another subject is a miss.
func TestNewTokenForKnownSubjectIsAHit(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	p := newCacheProbe(t, is, authztest.DefaultPolicies(t))
	mint := func(sub, jti string, roles ...string) authz.Request {
		return authz.Request{
			Token:  token.Raw(is.Mint(t, map[string]any{"sub": sub, "jti": jti, "roles": roles})),
			Action: authz.Action{Name: "orders:read"},
		}
	}
	first := mint("alice", "1", "viewer")
	want, hit := p.decide(first)
	if hit || !want.Allow {
		t.Fatalf("first decision: %+v, hit %v", want, hit)
	}
	if _, hit := p.decide(first); !hit {
		t.Fatal("a repeated request missed")
	}
	for i, tc := range []struct {
		req     authz.Request
		wantHit bool
	}{
		{mint("alice", "2", "viewer"), true},
		{mint("alice", "3", "viewer"), true},
		{mint("alice", "4", "editor"), false},      // another role
		{mint("bob", "5", "viewer"), false},        // another subject (the policy names it in a header)
		{mint("alice", "6", "viewer", "x"), false}, // the roles, as a whole, differ
	} {
		d, hit := p.decide(tc.req)
		if hit != tc.wantHit {
			t.Errorf("request %d: hit = %v, want %v", i, hit, tc.wantHit)
		}
		if hit && (d.Allow != want.Allow || d.Reasons[0] != want.Reasons[0] || d.Headers["x-verdict-subject"] != "alice" || d.ID == want.ID) {
			t.Errorf("request %d: cached answer %+v differs from %+v", i, d, want)
		}
	}
}

// TestRouteKeyedDecisions: a policy that reads only the method and the
// route's first segment answers /orders/17 from the decision made for
// /orders/42; another method or route is a miss.
func TestRouteKeyedDecisions(t *testing.T) {
	p := newCacheProbe(t, nil, readsetPolicy(t, "method_and_route.rego"))
	get := func(method, path string) authz.Request {
		return authz.Request{Action: authz.Action{Method: method, Path: path}}
	}
	for range 2 {
		p.decide(get("GET", "/orders/42"))
	}
	for _, tc := range []struct {
		req              authz.Request
		wantHit, wantAll bool
	}{
		{get("GET", "/orders/17"), true, true},
		{get("GET", "/orders/99/items"), true, true},
		{get("DELETE", "/orders/17"), false, false},
		{get("GET", "/catalog/17"), false, false},
	} {
		d, hit := p.decide(tc.req)
		if hit != tc.wantHit || d.Allow != tc.wantAll {
			t.Errorf("%s %s: hit %v allow %v, want hit %v allow %v", tc.req.Action.Method, tc.req.Action.Path, hit, d.Allow, tc.wantHit, tc.wantAll)
		}
		if d.Allow && d.Reasons[0] != "GET on orders" {
			t.Errorf("%s %s: reasons %q", tc.req.Action.Method, tc.req.Action.Path, d.Reasons)
		}
	}
}

// TestResourceKeyedDecisions: requests with a resource are cached, keyed on
// what the policy reads of it; a value it reads changed is a miss.
func TestResourceKeyedDecisions(t *testing.T) {
	p := newCacheProbe(t, nil, readsetPolicy(t, "resource_owner.rego"))
	req := func(owner string, id int) authz.Request {
		return authz.Request{Subject: &authz.Subject{Type: "user", ID: "alice"}, Action: authz.Action{Name: "orders:read"},
			Resource: map[string]any{"owner": owner, "id": id}}
	}
	for range 2 {
		p.decide(req("alice", 1))
	}
	if d, hit := p.decide(req("alice", 2)); !hit || !d.Allow {
		t.Errorf("another id of a resource alice owns: hit %v allow %v, want a cached allow", hit, d.Allow)
	}
	if d, hit := p.decide(req("bob", 1)); hit || d.Allow {
		t.Errorf("bob's resource: hit %v allow %v, want an evaluated deny", hit, d.Allow)
	}
	other := req("alice", 1)
	other.Subject.ID = "bob"
	if d, hit := p.decide(other); hit || d.Allow {
		t.Errorf("another subject: hit %v allow %v, want an evaluated deny", hit, d.Allow)
	}
}

// TestKeyMemoFollowsTheSnapshot: a known token's part of the key is
// remembered per snapshot; after a reload to a policy that reads other
// claims, tokens that agreed on the old reads but not on the new ones get
// their own answers.
func TestKeyMemoFollowsTheSnapshot(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	p := newCacheProbe(t, is, authztest.Policy(t, "roles", "package authz\n\nallow if \"admin\" in input.subject.claims.roles\n"))
	req := func(tenant string) authz.Request {
		return authz.Request{Token: token.Raw(is.Mint(t, map[string]any{"roles": []string{"admin"}, "tenant": tenant})),
			Action: authz.Action{Name: "x"}}
	}
	a, b := req("a"), req("b")
	for _, r := range []authz.Request{a, a, b, b} {
		if d, _ := p.decide(r); !d.Allow {
			t.Fatal("denied an admin")
		}
	}
	if err := p.e.Load(t.Context(), authztest.Policy(t, "tenant", "package authz\n\nallow if input.subject.claims.tenant == \"a\"\n")); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if d, _ := p.decide(a); !d.Allow {
			t.Fatal("denied tenant a")
		}
	}
	if d, hit := p.decide(b); d.Allow || hit {
		t.Fatalf("tenant b: allow %v, hit %v: answered with tenant a's decision", d.Allow, hit)
	}
}
