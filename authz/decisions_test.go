package authz

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
)

func snapshotOf(rego string) *bundles.Snapshot {
	return &bundles.Snapshot{Revision: "r", Modules: []bundles.Module{{Path: "p.rego", Raw: []byte(rego)}}, Data: map[string]any{}}
}

func TestDecisionCacheability(t *testing.T) {
	tests := []struct {
		name, rego, want string
	}{
		{"request only", "package authz\n\nallow if input.action.name == data.x\n", "on"},
		{"reads context", "package authz\n\nallow if input.context.attributes.tenant == \"a\"\n", "off: the policy reads input.context (p.rego)"},
		{"reads whole input", "package authz\n\nallow if json.marshal(input) != \"\"\n", "off: the policy reads the whole input document (p.rego)"},
		{"computed key", "package authz\n\nallow if {\n\tsome k\n\tinput[k].id == \"x\"\n}\n", "off: the policy reads input with a computed key (p.rego)"},
		{"clock", "package authz\n\nallow if time.now_ns() > 0\n", "off: the policy uses time.now_ns (p.rego)"},
		{"jwt with clock", "package authz\n\nallow if io.jwt.decode_verify(input.resource.t, {\"secret\": \"s\"})[0]\n", "off: the policy uses io.jwt.decode_verify (p.rego)"},
		{"builtin named in with", "package authz\n\nfetch(_) := {\"status_code\": 500}\n\nallow if {\n\tresp := fetch({}) with fetch as http.send\n\tresp.status_code == 200\n}\n", "off: the policy uses http.send (p.rego)"},
		{"http", "package authz\n\nallow if http.send({\"method\": \"GET\", \"url\": \"http://127.0.0.1:1\"}).status_code == 200\n", "off: the policy uses http.send (p.rego)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Load(t.Context(), snapshotOf(tc.rego)); err != nil {
				t.Fatal(err)
			}
			if got := e.Status().DecisionCache; got != tc.want {
				t.Errorf("DecisionCache = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestDecisionCacheServesRepeats: a repeated request is answered from the
// snapshot's cache with the same answer; requests with a resource and
// policies that read the clock are never cached; a new snapshot starts empty.
func TestDecisionCacheServesRepeats(t *testing.T) {
	ctx := context.Background()
	e, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx, snapshotOf("package authz\n\nallow if input.action.name == \"read\"\n\nreasons := {input.action.name}\n\nheaders := {\"x-a\": input.action.name}\n")); err != nil {
		t.Fatal(err)
	}
	first, err := e.Decide(ctx, Request{Action: Action{Name: "read"}})
	if err != nil || !first.Allow {
		t.Fatal(first, err)
	}
	cp := e.current.Load()
	if n := cp.decisions.len(); n != 1 {
		t.Fatalf("cache holds %d decisions after one, want 1", n)
	}
	again, err := e.Decide(ctx, Request{Action: Action{Name: "read"}})
	if err != nil || !again.Allow || again.Reasons[0] != "read" || again.Headers["x-a"] != "read" || again.ID == first.ID {
		t.Fatalf("cached answer %+v (%v) differs from %+v, or reused its ID", again, err, first)
	}
	again.Reasons[0], again.Headers["x-a"] = "mutated", "mutated" // callers own what they get
	if d, _ := e.Decide(ctx, Request{Action: Action{Name: "read"}}); d.Reasons[0] != "read" || d.Headers["x-a"] != "read" {
		t.Fatalf("a caller's change to a decision leaked into the cache: %+v", d)
	}
	if d, _ := e.Decide(ctx, Request{Action: Action{Name: "write"}}); d.Allow {
		t.Fatal("another action got the cached allow")
	}
	if _, err := e.Decide(ctx, Request{Action: Action{Name: "read"}, Resource: map[string]any{"id": 1}}); err != nil {
		t.Fatal(err)
	}
	if n := cp.decisions.len(); n != 2 {
		t.Fatalf("cache holds %d decisions, want 2 (a request with a resource is never cached)", n)
	}

	if err := e.Load(ctx, snapshotOf("package authz\n\nallow if input.action.name == \"write\"\n")); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(ctx, Request{Action: Action{Name: "read"}}); d.Allow {
		t.Fatal("a new snapshot answered from the old snapshot's cache")
	}
}

// TestClockPolicyIsNeverCached: a policy that reads input.context.time sees
// every request's own time.
func TestClockPolicyIsNeverCached(t *testing.T) {
	now := time.Date(2026, 1, 1, 11, 59, 0, 0, time.UTC)
	e, err := New(Options{Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	policy := "package authz\n\nallow if time.parse_rfc3339_ns(input.context.time) < time.parse_rfc3339_ns(\"2026-01-01T12:00:00Z\")\n"
	if err := e.Load(t.Context(), snapshotOf(policy)); err != nil {
		t.Fatal(err)
	}
	if d, _ := e.Decide(t.Context(), Request{Action: Action{Name: "x"}}); !d.Allow {
		t.Fatal("denied before noon")
	}
	now = now.Add(2 * time.Minute)
	if d, _ := e.Decide(t.Context(), Request{Action: Action{Name: "x"}}); d.Allow {
		t.Fatal("allowed after noon: a time-dependent answer was cached")
	}
	if st := e.Status(); !strings.HasPrefix(st.DecisionCache, "off:") {
		t.Errorf("DecisionCache = %q", st.DecisionCache)
	}
}

// TestOneShotTokensAreNotCached: a token's decision is cached from its
// second use on, so a flood of tokens seen once cannot fill the cache.
func TestOneShotTokensAreNotCached(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	e, err := New(Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context(), snapshotOf("package authz\n\nallow if input.subject.authenticated\n")); err != nil {
		t.Fatal(err)
	}
	cp := e.current.Load()
	for i := range 20 {
		tok := is.Mint(t, map[string]any{"jti": i})
		if d, err := e.Decide(t.Context(), Request{Token: token.Raw(tok), Action: Action{Name: "x"}}); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	}
	if n := cp.decisions.len(); n != 0 {
		t.Fatalf("%d decisions cached for tokens used once", n)
	}
	tok := is.Mint(t, map[string]any{"jti": "twice"})
	for range 2 {
		if _, err := e.Decide(t.Context(), Request{Token: token.Raw(tok), Action: Action{Name: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := cp.decisions.len(); n != 1 {
		t.Fatalf("%d decisions cached after a token's second use, want 1", n)
	}
}
