package authz

import (
	"context"
	"fmt"
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

// TestDecisionCacheServesRepeats: a repeated request is answered from the
// snapshot's cache with the same answer; a request with a resource the
// policy does not read shares the entry; a new snapshot starts empty.
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
		t.Fatalf("cache holds %d decisions, want 2 (the policy reads nothing of the resource)", n)
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

// TestOneShotKeysStayOnProbation: tokens and decision keys seen once stay
// in their caches' probationary segments and never reach the main ones,
// so a flood of them cannot displace the entries in use; a second use
// admits them.
func TestOneShotKeysStayOnProbation(t *testing.T) {
	is := authztest.NewIssuer(t, "EdDSA")
	e, err := New(Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context(), snapshotOf("package authz\n\nallow if input.subject.id != \"\"\n")); err != nil {
		t.Fatal(err)
	}
	cp := e.current.Load()
	for i := range 200 {
		tok := is.Mint(t, map[string]any{"sub": fmt.Sprint("user-", i)})
		if d, err := e.Decide(t.Context(), Request{Token: token.Raw(tok), Action: Action{Name: "x"}}); err != nil || !d.Allow {
			t.Fatal(d, err)
		}
	}
	if n := e.cache.mainLen(); n != 0 {
		t.Errorf("%d tokens used once in the token cache's main segment", n)
	}
	if n := cp.decisions.mainLen(); n != 0 {
		t.Errorf("%d decisions made once in the decision cache's main segment", n)
	}
	tok := is.Mint(t, map[string]any{"sub": "twice"})
	for range 2 {
		if _, err := e.Decide(t.Context(), Request{Token: token.Raw(tok), Action: Action{Name: "x"}}); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.cache.mainLen(); n != 1 {
		t.Errorf("%d tokens in the main segment after one token's second use, want 1", n)
	}
	if n := cp.decisions.mainLen(); n != 1 {
		t.Errorf("%d decisions in the main segment after one key's second use, want 1", n)
	}
}
