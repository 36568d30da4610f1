package authz

import (
	"fmt"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/bundles"
)

// normalizeEntrypoint returns ep as a package path ("authz", not
// "data.authz"), DefaultEntrypoint for "", refusing one that is not a
// ground package path or is the engine's own entry package.
func normalizeEntrypoint(ep string) (string, error) {
	ep = strings.TrimPrefix(strings.TrimSpace(ep), "data.")
	if ep == "" {
		ep = DefaultEntrypoint
	}
	ref, err := ast.ParseRef("data." + ep)
	if err != nil || !ref.IsGround() {
		return "", fmt.Errorf("entrypoint %q is not a package path", ep)
	}
	for _, t := range ref[1:] {
		if _, ok := t.Value.(ast.String); !ok {
			return "", fmt.Errorf("entrypoint %q is not a package path", ep)
		}
	}
	if ep == entryPackage || strings.HasPrefix(ep, entryPackage+".") {
		return "", fmt.Errorf("entrypoint %q is reserved", ep)
	}
	return ep, nil
}

// EntrypointError is the cause of a CompileError (errors.As reaches it)
// when no module declares the entrypoint package: the policy set was
// probably written for another one, which Packages suggests.
type EntrypointError struct {
	// Entrypoint is the package looked for ("authz").
	Entrypoint string
	// Packages are the packages the policy's modules declare, test files
	// left out, as an entrypoint is written ("todo"), sorted; empty when
	// there are none.
	Packages []string
}

// Error says which package is missing and which ones are declared.
func (e *EntrypointError) Error() string {
	msg := fmt.Sprintf("no module declares the entrypoint package %q", e.Entrypoint)
	switch len(e.Packages) {
	case 0:
		return msg
	case 1:
		return msg + " (the modules declare package " + e.Packages[0] + ")"
	}
	return msg + " (the modules declare packages " + strings.Join(e.Packages, ", ") + ")"
}

// policyPackages lists the packages of c's modules that are the policy's
// (not the engine's entry module, not s's test files), as an entrypoint
// is written, sorted and once each.
func policyPackages(c *ast.Compiler, s *bundles.Snapshot) []string {
	tests := map[string]bool{}
	for _, m := range s.Modules {
		tests[m.Path] = m.IsTest()
	}
	var pkgs []string
	for name, m := range c.Modules {
		if tests[name] || strings.HasPrefix(name, "verdict:") {
			continue
		}
		pkgs = append(pkgs, strings.TrimPrefix(m.Package.Path.String(), "data."))
	}
	slices.Sort(pkgs)
	return slices.Compact(pkgs)
}

// hasPackage reports whether one of c's modules declares pkg.
func hasPackage(c *ast.Compiler, pkg string) bool {
	want := ast.MustParseRef("data." + pkg)
	for _, m := range c.Modules {
		if m.Package.Path.Equal(want) {
			return true
		}
	}
	return false
}
