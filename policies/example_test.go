package policies_test

import (
	"fmt"
	"io/fs"

	"github.com/verdict-pdp/verdict/policies"
)

// The default policy set is an OPA bundle: .rego files by package directory
// and a data.json whose directory is its data path.
func ExampleFS() {
	fs.WalkDir(policies.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fmt.Println(path)
		}
		return err
	})
	// Output:
	// authz/action.rego
	// authz/action_test.rego
	// authz/authz.rego
	// authz/authz_test.rego
	// authz/helpers_test.rego
	// authz/rbac.rego
	// authz/rbac_test.rego
	// authz/services.rego
	// authz/services_test.rego
	// data.json
}
