package policies_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/format"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/tester"

	"github.com/verdict-pdp/verdict/policies"
)

// schemaPath is the input document's schema. The authz package embeds the
// same file; tests read it from disk to stay independent of that package.
const schemaPath = "../authz/input.schema.json"

// inputSchema returns a schema set with the input document's schema at its root.
func inputSchema(t *testing.T) *ast.SchemaSet {
	t.Helper()
	raw, err := os.ReadFile(schemaPath)
	if err != nil {
		t.Fatalf("read schema: %v", err)
	}
	var schema any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatalf("parse %s: %v", schemaPath, err)
	}
	set := ast.NewSchemaSet()
	set.Put(ast.SchemaRootRef, schema)
	return set
}

// readBundle reads FS() the way OPA reads a bundle directory.
func readBundle(t *testing.T) bundle.Bundle {
	t.Helper()
	loader, err := bundle.NewFSLoader(policies.FS())
	if err != nil {
		t.Fatalf("bundle loader: %v", err)
	}
	b, err := bundle.NewCustomReader(loader).WithRegoVersion(ast.RegoV1).Read()
	if err != nil {
		t.Fatalf("read bundle: %v", err)
	}
	return b
}

// compile compiles modules with the input schema and returns OPA's errors.
func compile(t *testing.T, modules map[string]string) ast.Errors {
	t.Helper()
	parsed := make(map[string]*ast.Module, len(modules))
	for name, src := range modules {
		m, err := ast.ParseModuleWithOpts(name, src, ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		parsed[name] = m
	}
	c := ast.NewCompiler().WithSchemas(inputSchema(t))
	c.Compile(parsed)
	return c.Errors
}

// fsModules returns the source of every .rego file in FS(), by path.
func fsModules(t *testing.T) map[string]string {
	t.Helper()
	modules := map[string]string{}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Ext(p) != ".rego" {
			return err
		}
		src, err := fs.ReadFile(policies.FS(), p)
		modules[p] = string(src)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return modules
}

// TestRego runs every Rego unit test in FS() through OPA's tester, against
// the embedded data and with the input schema, as `verdict test` does.
func TestRego(t *testing.T) {
	b := readBundle(t)
	ch := runRegoTests(t, &b, "tests")
	ran := 0
	for r := range ch {
		ran++
		name := strings.TrimPrefix(r.Package, "data.") + "." + r.Name
		t.Run(name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s: error: %v", r.Location, r.Error)
			case r.Fail:
				t.Errorf("%s: failed", r.Location)
			case r.Skip:
				t.Skipf("%s: skipped", r.Location)
			}
		})
	}
	if ran == 0 {
		t.Fatal("no Rego tests ran")
	}
	t.Logf("%d Rego tests ran", ran)
}

// runRegoTests runs b's Rego unit tests through OPA's tester, against b's
// data and with the input schema, as `verdict test` does; what names b in
// the failure when they do not compile.
func runRegoTests(t *testing.T, b *bundle.Bundle, what string) <-chan *tester.Result {
	t.Helper()
	ctx := t.Context()
	store := inmem.NewFromObject(b.Data)
	txn := storage.NewTransactionOrDie(ctx, store)
	t.Cleanup(func() { store.Abort(ctx, txn) })
	ch, err := tester.NewRunner().
		SetCompiler(ast.NewCompiler().WithSchemas(inputSchema(t))).
		SetStore(store).
		SetModules(b.ParsedModules("default")).
		RaiseBuiltinErrors(true).
		SetDefaultRegoVersion(ast.RegoV1).
		RunTests(ctx, txn)
	if err != nil {
		t.Fatalf("compile %s: %v", what, err)
	}
	return ch
}

// TestModulesTypeCheck compiles every module in FS(), tests included,
// against the input schema.
func TestModulesTypeCheck(t *testing.T) {
	modules := fsModules(t)
	if len(modules) == 0 {
		t.Fatal("FS() holds no .rego files")
	}
	if errs := compile(t, modules); len(errs) > 0 {
		t.Fatalf("default policies do not type-check against %s:\n%v", schemaPath, errs)
	}
}

// TestSchemaCatchesTypos shows that a reference to a field the input
// document does not have is a compile error at its file:row:col, while the
// free-form parts of the document (claims, resource, attributes) take any key.
func TestSchemaCatchesTypos(t *testing.T) {
	tests := []struct {
		name string
		body string // the line after "allow if "
		want string // "" when the module must compile; else the error, without the file
	}{
		{name: "subject typo", body: "input.subjet.authenticated", want: "3:10: rego_type_error: undefined ref: input.subjet.authenticated"},
		{name: "action field typo", body: `input.action.nmae == "orders:read"`, want: "3:10: rego_type_error: undefined ref: input.action.nmae"},
		{name: "caller field typo", body: `input.caller.metod == "mtls"`, want: "3:10: rego_type_error: undefined ref: input.caller.metod"},
		{name: "certificate field typo", body: `input.caller.certificate.dns_name[_] == "a"`, want: "3:10: rego_type_error: undefined ref: input.caller.certificate.dns_name[_]"},
		{name: "context field typo", body: `input.context.remote_address == ""`, want: "3:10: rego_type_error: undefined ref: input.context.remote_address"},
		{name: "top-level typo", body: `input.resources.owner == "alice"`, want: "3:10: rego_type_error: undefined ref: input.resources.owner"},
		{name: "boolean used as object", body: `input.subject.authenticated.yes`, want: "3:10: rego_type_error: undefined ref: input.subject.authenticated.yes"},
		{name: "subject claims are free-form", body: `"admin" in input.subject.claims.realm_access.roles`},
		{name: "caller claims are free-form", body: `input.caller.claims.azp == "payments"`},
		{name: "resource is free-form", body: `input.resource.owner.id == input.subject.id`},
		{name: "context attributes are free-form", body: `input.context.attributes.tenant == "shop"`},
		{name: "declared fields", body: `input.action.segments[0] == input.caller.certificate.uris[_]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "package typo\n\nallow if " + tc.body + "\n"
			errs := compile(t, map[string]string{"typo.rego": src})
			if tc.want == "" {
				if len(errs) > 0 {
					t.Fatalf("compile(%q) = %v, want no error", tc.body, errs)
				}
				return
			}
			var got []string
			for _, e := range errs {
				got = append(got, located(e))
			}
			want := "typo.rego:" + tc.want
			if !slices.Contains(got, want) {
				t.Errorf("compile(%q) errors:\n%s\nwant one: %s", tc.body, strings.Join(got, "\n"), want)
			}
		})
	}
}

// TestSchemaRejectsSubjetAndNmae is the acceptance case for the schema: both
// typos in one module are reported, each with its own location.
func TestSchemaRejectsSubjetAndNmae(t *testing.T) {
	src := `package authz

allow if {
	input.subjet.authenticated
	input.action.nmae == "orders:read"
}
`
	errs := compile(t, map[string]string{"authz/typo.rego": src})
	var got []string
	for _, e := range errs {
		if e.Code != ast.TypeErr {
			t.Errorf("error code = %q, want %q: %v", e.Code, ast.TypeErr, e)
		}
		got = append(got, located(e))
	}
	slices.Sort(got)
	want := []string{
		"authz/typo.rego:4:2: rego_type_error: undefined ref: input.subjet.authenticated",
		"authz/typo.rego:5:2: rego_type_error: undefined ref: input.action.nmae",
	}
	if !slices.Equal(got, want) {
		t.Errorf("errors (-want +got):\n-%s\n+%s", strings.Join(want, "\n-"), strings.Join(got, "\n+"))
	}

	var astErrs ast.Errors
	if !errors.As(errs, &astErrs) || len(astErrs) != 2 {
		t.Errorf("errors.As(ast.Errors) = %d errors, want 2", len(astErrs))
	}
}

// TestSchemaIsNotSilentlyIgnored guards the tests above: without the schema
// the same typo compiles, so it is the schema that catches it.
func TestSchemaIsNotSilentlyIgnored(t *testing.T) {
	m := ast.MustParseModuleWithOpts("package typo\n\nallow if input.subjet.authenticated\n", ast.ParserOptions{RegoVersion: ast.RegoV1})
	c := ast.NewCompiler()
	if c.Compile(map[string]*ast.Module{"typo.rego": m}); c.Failed() {
		t.Fatalf("without a schema: %v", c.Errors)
	}
}

// TestRegoIsFormatted keeps the example policies as `opa fmt` writes them.
func TestRegoIsFormatted(t *testing.T) {
	for name, src := range fsModules(t) {
		got, err := format.SourceWithOpts(name, []byte(src), format.Opts{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Errorf("format %s: %v", name, err)
			continue
		}
		if string(got) != src {
			t.Errorf("%s is not formatted; `opa fmt` would write:\n%s", name, got)
		}
	}
}

// TestDataLayout checks that data.json lands where the policies read it.
func TestDataLayout(t *testing.T) {
	b := readBundle(t)
	for _, key := range []string{"public_actions", "roles", "service_identities", "service_actions"} {
		if _, ok := b.Data[key]; !ok {
			t.Errorf("data.%s missing; data has %v", key, keys(b.Data))
		}
	}
}

// located renders an OPA error as file:row:col: code: first message line.
func located(e *ast.Error) string {
	msg, _, _ := strings.Cut(e.Message, "\n")
	if e.Location == nil {
		return fmt.Sprintf("?: %s: %s", e.Code, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", e.Location.File, e.Location.Row, e.Location.Col, e.Code, msg)
}

func keys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
