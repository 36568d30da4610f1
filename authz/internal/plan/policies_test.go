package plan_test

import (
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// TestRegoTests runs every Rego test of the default policy set, its
// example and the policies under testdata/policies with both evaluators:
// they must agree, and every test must pass. The tests lean on `with` for
// their inputs and data, so they exercise the plan's with statements too.
func TestRegoTests(t *testing.T) {
	for _, ps := range policySets(t) {
		t.Run(ps.name, func(t *testing.T) {
			names := testRules(ps.compiler)
			if len(names) == 0 {
				t.Fatal("no Rego tests")
			}
			for _, ref := range names {
				t.Run(strings.TrimPrefix(ref, "data."), func(t *testing.T) {
					ev := ps.prepare(t, "x = "+ref)
					want, got := ev.evalBoth(t, "x", nil, time.Now())
					if !want.equal(got) {
						t.Fatalf("topdown: %v, compiled: %v", want, got)
					}
					if got.value == nil || !got.value.Equal(ast.InternedTerm(true)) {
						t.Fatalf("test failed: %v", got)
					}
					// The shipped policies must not need topdown at all.
					if got.refused != "" && (ps.name == "default" || ps.name == "authzen-todo") {
						t.Fatalf("left to topdown: %s", got.refused)
					}
				})
			}
			t.Logf("%d Rego tests agree and pass", len(names))
		})
	}
}

// testRules lists the test rules of the compiled test modules.
func testRules(c *ast.Compiler) []string {
	seen := map[string]bool{}
	var out []string
	for name, m := range c.Modules {
		if !strings.HasSuffix(name, "_test.rego") {
			continue
		}
		for _, r := range m.Rules {
			if n := string(r.Head.Name); strings.HasPrefix(n, "test_") {
				ref := m.Package.Path.String() + "." + n
				if !seen[ref] {
					seen[ref] = true
					out = append(out, ref)
				}
			}
		}
	}
	return out
}

// TestDecisions compares the engine's decision query on inputs shaped as
// the engine builds them, and on a few it never builds.
func TestDecisions(t *testing.T) {
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	for _, ps := range policySets(t) {
		t.Run(ps.name, func(t *testing.T) {
			ev := ps.prepare(t, decisionQuery)
			for i, input := range decisionInputs {
				want, got := ev.evalBoth(t, "decision", ast.MustParseTerm(input).Value, now)
				if !want.equal(got) {
					t.Errorf("input %d %s:\ntopdown:  %v\ncompiled: %v", i, input, want, got)
				}
				if got.refused != "" {
					t.Logf("input %d left to topdown: %s", i, got.refused)
				}
			}
			// No input at all.
			want, got := ev.evalBoth(t, "decision", nil, now)
			if !want.equal(got) {
				t.Errorf("no input:\ntopdown:  %v\ncompiled: %v", want, got)
			}
		})
	}
}

var decisionInputs = []string{
	`{}`,
	`{"subject": {"authenticated": false}, "caller": {"authenticated": false, "method": "none"}, "action": {"name": "health:read"}, "resource": {}, "context": {"time": "2026-01-01T00:00:00Z", "request_id": "r"}}`,
	`{"subject": {"authenticated": true, "method": "token", "id": "alice", "issuer": "https://idp", "claims": {"sub": "alice", "roles": ["viewer"]}}, "caller": {"authenticated": false, "method": "none"}, "action": {"name": "orders:read"}, "resource": {}, "context": {"time": "2026-01-01T00:00:00Z", "request_id": "r"}}`,
	`{"subject": {"authenticated": true, "id": "bob", "claims": {"roles": ["admin", "viewer"]}}, "caller": {"authenticated": false, "method": "none"}, "action": {"name": "orders:delete"}, "resource": {}, "context": {}}`,
	`{"subject": {"authenticated": true, "id": "bob", "claims": {"roles": ["editor"]}}, "caller": {"authenticated": true, "id": "payments", "method": "token"}, "action": {"name": "inventory:reserve"}}`,
	`{"subject": {"authenticated": false}, "caller": {"authenticated": true, "id": "spiffe://verdict.example/ns/shop/sa/payments", "method": "mtls"}, "action": {"name": "inventory:reserve"}}`,
	`{"subject": {"authenticated": false}, "caller": {"authenticated": true, "id": "orders", "method": "token"}, "action": {"name": "inventory:reserve"}}`,
	`{"subject": {"authenticated": false}, "caller": {"authenticated": false, "id": "payments"}, "action": {"name": "inventory:reserve"}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": ["viewer"]}}, "action": {"method": "GET", "path": "/orders/42", "segments": ["orders", "42"]}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": ["viewer"]}}, "action": {"name": "", "method": "get", "path": "//orders/?x=1"}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": ["admin"]}}, "action": {"method": "TRACE", "path": "/orders"}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": ["admin"]}}, "action": {"method": "POST", "path": "/inventory:reserve"}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": "admin"}}, "action": {"name": "orders:read"}}`,
	`{"subject": {"authenticated": true, "claims": {"roles": [1, null, "viewer"]}}, "action": {"name": "orders:read"}}`,
	`{"subject": {"authenticated": "yes", "claims": {"roles": ["viewer"]}}, "action": {"name": "orders:read"}}`,
	`{"action": {"name": 7}}`,
	`{"action": {"method": 7, "path": "/x"}}`,
	`{"action": {"method": "GET", "path": 7}}`,
	`{"action": {"method": "GET", "segments": "orders"}}`,
	`{"action": {"name": "x:y:z"}, "subject": {"authenticated": true, "claims": {"roles": ["admin"]}}}`,
	`{"subject": {"authenticated": true, "id": "u1", "claims": {"groups": ["Support", 3], "clearance": 2, "tenants": ["acme"]}}, "action": {"name": "tickets:read", "segments": ["x"]}, "resource": {"tenant": "acme", "usage": {"storage": 12}}, "context": {"time": "2026-01-05T10:00:00Z"}}`,
	`{"subject": {"authenticated": true, "id": "u1", "claims": {"groups": "Support", "clearance": "high"}}, "action": {"name": "tickets:read"}, "resource": {"tenant": 5}, "context": {"time": "yesterday"}}`,
	`{"subject": {"authenticated": true, "id": "mallory", "claims": {"uid": 7, "index": 0, "level": 11}}, "resource": {"classified": true}, "context": {"remote_addr": "192.0.2.1"}}`,
	`{"subject": {"authenticated": true, "id": "trudy", "claims": {"uid": "42", "index": "1", "level": "x", "roles": [1, 2, 3, 4]}}, "context": {"remote_addr": "not an address"}}`,
	`{"subject": {"authenticated": true, "claims": {"uid": 7.0, "index": 1.0}}}`,
	`{"subject": {"authenticated": true, "claims": {"scopes": ["read"], "quota": "4096"}}, "action": {"path": "/a/b"}, "resource": {"size": "2KB"}, "context": {"attributes": {"client": "v2.0.0", "payload": "eyJzY29wZSI6InJlYWQifQ"}}}`,
	`{"subject": {"authenticated": true, "claims": {"scopes": ["read"], "quota": "lots"}}, "resource": {"size": "2KB"}, "context": {"attributes": {"client": "v2", "payload": "!!"}}}`,
	`{"subject": {"authenticated": true, "method": "asserted", "type": "user", "id": "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"}, "action": {"name": "can_delete_todo"}, "resource": {"type": "todo", "id": "1", "properties": {"ownerID": "rick@the-citadel.com"}}}`,
	`{"subject": {"authenticated": true, "method": "asserted", "type": "user", "id": "morty@the-citadel.com"}, "action": {"name": "can_update_todo"}, "resource": {"type": "todo", "properties": {"ownerID": "morty@the-citadel.com"}}}`,
	`{"subject": {"type": "user", "id": "nobody"}, "action": {"name": "can_read_todos"}}`,
}
