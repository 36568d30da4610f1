// Package policies holds Verdict's default policy set: Rego policies, their
// data and their Rego unit tests, embedded in the binary.
//
// The set is laid out as an OPA bundle rooted at FS():
//
//	data.json              the base document: public actions, roles and
//	                       their permissions, the service allowlist
//	authz/authz.rego       package authz, the entrypoint: allow, reasons, headers
//	authz/action.rego      how an action is named (orders:read)
//	authz/rbac.rego        role-based access from the subject's roles claim
//	authz/services.rego    the service-to-service allowlist
//	authz/*_test.rego      Rego unit tests (package authz_test)
//
// A data.json maps to the data path of its directory, so the root data.json
// is read by the policies as data.roles, data.public_actions and so on.
//
// The engine serves this set when no other policy source is configured, and
// policy authors copy it as a starting point; README.md is their guide.
// Importing this package has no side effects.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed data.json authz/*.rego
var files embed.FS

// FS returns the default policy set as a read-only file system laid out as an
// OPA bundle (see the package documentation). It includes the *_test.rego
// files. The result is safe for concurrent use; every call returns the same
// immutable contents.
func FS() fs.FS { return files }
