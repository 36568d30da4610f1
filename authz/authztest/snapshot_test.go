package authztest_test

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

func TestPolicyFiles(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "a.rego"), "package authz\n\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(dir, "b.rego"), "package authz\n\nallow := false\n")
	authztest.WriteFile(t, filepath.Join(dir, "notes.txt"), "not a policy")
	got := authztest.PolicyFiles(t, dir)
	if len(got) != 2 {
		t.Fatalf("got %d snapshots, want a.rego and b.rego", len(got))
	}
	for name, s := range got {
		if len(s.Modules) != 1 || s.Modules[0].Path != name || s.Revision == "" {
			t.Errorf("%s: revision %q, modules %+v; want the one module %s and a content hash", name, s.Revision, s.Modules, name)
		}
	}
	if got["a.rego"].Revision == got["b.rego"].Revision {
		t.Error("two different files, one revision")
	}

	tb := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != tb {
				panic(r)
			}
		}()
		authztest.PolicyFiles(tb, t.TempDir())
	}()
	if !strings.Contains(tb.msg, "no policies in") {
		t.Errorf("PolicyFiles on an empty directory: Fatalf message %q", tb.msg)
	}
}

func TestDefaultPolicies(t *testing.T) {
	s := authztest.DefaultPolicies(t)
	if s.Origin != "embedded" || !slices.ContainsFunc(s.Modules, func(m bundles.Module) bool { return m.Path == "authz/authz.rego" }) {
		t.Errorf("origin %q, %d modules: want the embedded default policies", s.Origin, len(s.Modules))
	}
}
