package policies_test

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/format"
)

// TestExamples runs the Rego tests of every policy set under examples/
// (each directory an OPA bundle, as `verdict serve --policies DIR` reads
// it) against its own data and the input schema, and keeps their Rego as
// `opa fmt` writes it. The examples are not embedded in the binary.
func TestExamples(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("examples", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no examples")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			loader, err := bundle.NewFSLoader(os.DirFS(dir))
			if err != nil {
				t.Fatal(err)
			}
			b, err := bundle.NewCustomReader(loader).WithRegoVersion(ast.RegoV1).Read()
			if err != nil {
				t.Fatalf("read %s: %v", dir, err)
			}
			for _, m := range b.Modules {
				got, err := format.SourceWithOpts(m.Path, m.Raw, format.Opts{RegoVersion: ast.RegoV1})
				if err != nil || string(got) != string(m.Raw) {
					t.Errorf("%s is not formatted as `opa fmt` writes it (%v)", path.Join(dir, m.Path), err)
				}
			}
			ch := runRegoTests(t, &b, dir)
			ran := 0
			for r := range ch {
				ran++
				name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
				switch {
				case r.Error != nil:
					t.Errorf("%s: %v", name, r.Error)
				case r.Fail:
					t.Errorf("%s (%s): failed", name, r.Location)
				}
			}
			if ran == 0 {
				t.Errorf("%s has no Rego tests", dir)
			}
			t.Logf("%d Rego tests ran", ran)
		})
	}
}
