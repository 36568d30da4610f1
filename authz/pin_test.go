package authz_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// TestPinnedKeepsItsSnapshot: a Pinned decides on the snapshot serving
// when it was made, after a Load has replaced it for Decide; one made
// before any Load refuses as not ready, even after one.
func TestPinnedKeepsItsSnapshot(t *testing.T) {
	e, err := authz.New(authz.Options{})
	if err != nil {
		t.Fatal(err)
	}
	early := e.Pin()
	if err := e.Load(t.Context(), authztest.Policy(t, "r1", "package authz\n\nallow if input.action.name == \"read\"\n")); err != nil {
		t.Fatal(err)
	}
	pinned := e.Pin()
	if err := e.Load(t.Context(), authztest.Policy(t, "r2", "package authz\n\nallow if input.action.name == \"write\"\n")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		dec  interface {
			Decide(context.Context, authz.Request) (authz.Decision, error)
		}
		action       string
		wantAllow    bool
		wantRevision string
		wantErr      error
	}{
		{name: "pinned, allowed by r1", dec: pinned, action: "read", wantAllow: true, wantRevision: "r1"},
		{name: "pinned, denied by r1", dec: pinned, action: "write", wantRevision: "r1"},
		{name: "engine, denied by r2", dec: e, action: "read", wantRevision: "r2"},
		{name: "engine, allowed by r2", dec: e, action: "write", wantAllow: true, wantRevision: "r2"},
		{name: "pinned before any load", dec: early, action: "read", wantErr: authz.ErrNotReady},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := tc.dec.Decide(t.Context(), authz.Request{Action: authz.Action{Name: tc.action}})
			if !errors.Is(err, tc.wantErr) || d.Allow != tc.wantAllow || d.Revision != tc.wantRevision {
				t.Errorf("Decide(%s) = allow %v, revision %q, %v; want %v, %q, %v",
					tc.action, d.Allow, d.Revision, err, tc.wantAllow, tc.wantRevision, tc.wantErr)
			}
		})
	}
	if got := pinned.Revision(); got != "r1" {
		t.Errorf("pinned.Revision() = %q, want r1", got)
	}
	if got := early.Revision(); got != "" {
		t.Errorf("early.Revision() = %q, want none", got)
	}
}

// Deciding a batch on one policy revision: a reload while it runs does not
// split it between two policies.
func ExampleEngine_Pin() {
	ctx := context.Background()
	engine, _ := authz.New(authz.Options{})
	policy := func(revision, allowed string) *bundles.Snapshot {
		return &bundles.Snapshot{Revision: revision, Data: map[string]any{}, Modules: []bundles.Module{{
			Path: "authz.rego", Raw: []byte("package authz\n\nallow if input.action.name == \"" + allowed + "\"\n"),
		}}}
	}
	_ = engine.Load(ctx, policy("v1", "orders:read"))

	batch := engine.Pin()
	for i, action := range []string{"orders:read", "orders:write"} {
		if i == 1 {
			_ = engine.Load(ctx, policy("v2", "orders:write")) // a reload mid-batch
		}
		d, _ := batch.Decide(ctx, authz.Request{Action: authz.Action{Name: action}})
		fmt.Println(action, d.Allow, d.Revision)
	}
	// Output:
	// orders:read true v1
	// orders:write false v1
}
