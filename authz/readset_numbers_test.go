package authz

import (
	"maps"
	"slices"
	"testing"

	"github.com/verdict-pdp/verdict/bundles"
)

// TestDecisionKeyNumberSpellings: a number can be written several ways
// (1, 1.0, 1e0, 100e-2); the rule tree is keyed by text, values compare by
// value, and an array is indexed only by integers. The key must never merge
// two requests the policy tells apart: each request, asked twice (the
// second time from the cache, if at all), gets the answer of an engine
// without a decision cache on OPA's own evaluator. The array cases allow
// the first request and deny the second.
func TestDecisionKeyNumberSpellings(t *testing.T) {
	x := func(v any) map[string]any { return map[string]any{"x": v} }
	arr := func(ok bool) map[string]any { return map[string]any{"a": []any{0, map[string]any{"ok": ok}}} }
	for _, tc := range []struct {
		name          string
		modules       map[string]string
		allow, deny   map[string]any
		wantNoteNotIn string // a read that must not be the whole key
	}{
		{"rule p[1] reached as p[1.0]", map[string]string{"p.rego": "package authz\n\nallow if p[1.0]\n\np[1] := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"rule p[1] reached as p[1e0]", map[string]string{"p.rego": "package authz\n\nallow if p[1e0]\n\np[1] := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"rule p[1] reached as p[100e-2]", map[string]string{"p.rego": "package authz\n\nallow if p[100e-2]\n\np[1] := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"rule p[1.0] reached as p[1]", map[string]string{"p.rego": "package authz\n\nallow if p[1]\n\np[1.0] := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"rule p[1].q reached as p[1.0].q", map[string]string{"p.rego": "package authz\n\nallow if p[1.0].q\n\np[1].q := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"partial set p[1] reached as p[1.0][\"a\"]", map[string]string{"p.rego": "package authz\n\nallow if p[1.0][\"a\"]\n\np[1] contains \"a\" if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"another package's p[1] as p[1.0]", map[string]string{
			"p.rego": "package authz\n\nallow if data.other.p[1.0]\n",
			"o.rego": "package other\n\np[1] := true if input.resource.x == 1\n"}, x(1), x(2), ""},
		{"a[1].ok beside a[1e0]", map[string]string{"p.rego": "package authz\n\nallow if input.resource.a[1].ok == true\n\nallow if input.resource.a[1e0] == \"z\"\n"}, arr(true), arr(false), "a[1e0]"},
		{"a[1e0] beside a[1].ok", map[string]string{"p.rego": "package authz\n\nallow if input.resource.a[1e0] == \"z\"\n\nallow if input.resource.a[1].ok == true\n"}, arr(true), arr(false), "a[1e0]"},
		{"a[1.0].ok beside a[1]", map[string]string{"p.rego": "package authz\n\nallow if input.resource.a[1.0].ok == true\n\nallow if input.resource.a[1] == \"z\"\n"}, arr(true), arr(false), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(Options{})
			if err != nil {
				t.Fatal(err)
			}
			snap := &bundles.Snapshot{Revision: "r", Data: map[string]any{}}
			for _, p := range slices.Sorted(maps.Keys(tc.modules)) {
				snap.Modules = append(snap.Modules, bundles.Module{Path: p, Raw: []byte(tc.modules[p])})
			}
			if err := e.Load(t.Context(), snap); err != nil {
				t.Fatal(err)
			}
			note := e.Status().DecisionCache
			if tc.wantNoteNotIn != "" && note == "on: keyed on input.resource."+tc.wantNoteNotIn {
				t.Errorf("decision_cache %q", note)
			}
			reference, err := New(Options{Evaluator: EvaluatorTopdown, DecisionCacheSize: -1})
			if err != nil {
				t.Fatal(err)
			}
			if err := reference.Load(t.Context(), snap); err != nil {
				t.Fatal(err)
			}
			for round := range 2 { // the second round is answered from the cache, if at all
				for _, resource := range []map[string]any{tc.allow, tc.deny} {
					req := Request{Action: Action{Name: "read"}, Resource: resource}
					got, gotErr := e.Decide(t.Context(), req)
					want, wantErr := reference.Decide(t.Context(), req)
					if got.Allow != want.Allow || (gotErr != nil) != (wantErr != nil) {
						t.Fatalf("round %d, %v: allow=%v (%v), OPA's evaluator without a cache: allow=%v (%v) (%s)",
							round, resource, got.Allow, gotErr, want.Allow, wantErr, note)
					}
				}
			}
			if tc.wantNoteNotIn != "" {
				if d, _ := reference.Decide(t.Context(), Request{Action: Action{Name: "read"}, Resource: tc.allow}); !d.Allow {
					t.Fatalf("%v: the policy does not allow it", tc.allow)
				}
			}
		})
	}
}
