package examples_test

import (
	"testing"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/test/load/examples"
)

// TestExamples loads each example as Verdict loads a policy set (parsed,
// type-checked against the input schema) and runs its Rego tests.
func TestExamples(t *testing.T) {
	for _, name := range []string{"caller", "abac"} {
		t.Run(name, func(t *testing.T) {
			fsys, err := examples.FS(name)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := bundles.ReadFS(fsys, bundles.ReadOptions{Origin: "example:" + name})
			if err != nil {
				t.Fatal(err)
			}
			run, err := authz.RunTests(t.Context(), snap, authz.TestOptions{})
			if err != nil {
				t.Fatalf("%s does not compile: %v", name, err)
			}
			if len(run.Results) == 0 {
				t.Fatalf("%s has no Rego tests", name)
			}
			for _, r := range run.Results {
				if r.Fail || r.Error != nil {
					t.Errorf("%s: %s failed (%v)", name, r.Name, r.Error)
				}
			}
		})
	}
}

func TestFSUnknown(t *testing.T) {
	for _, name := range []string{"", ".", "nope"} {
		if _, err := examples.FS(name); err == nil {
			t.Errorf("FS(%q): no error", name)
		}
	}
}
