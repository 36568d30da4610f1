// Package examples holds the Verdict policies of the HTTP load comparison's
// workloads that the default policy set does not cover (test/load/run.sh):
//
//	caller/   workload "cert": the user's roles AND an allowlist of calling
//	          services, the caller proved by a forwarded client certificate
//	abac/     workload "abac": resource attributes (tenant, owner) compared
//	          with the verified claims
//
// Each directory is a policy set as `verdict serve --policies DIR` reads it
// (package authz, data.json, Rego tests). test/load/opabaseline holds the
// same policies written for OPA.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed caller/*.rego caller/data.json abac/*.rego abac/data.json
var files embed.FS

// FS returns the example with the given name (caller, abac) as a read-only
// file system rooted at its directory.
func FS(name string) (fs.FS, error) {
	if name == "" || name == "." {
		return nil, fs.ErrNotExist
	}
	if _, err := fs.Stat(files, name); err != nil {
		return nil, err
	}
	return fs.Sub(files, name)
}
