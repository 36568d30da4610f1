// Package opabaseline holds the policy Verdict's benchmarks give OPA as its
// baseline (policy.rego.tmpl): the default policy's RBAC written the way an
// OPA user writes it, verifying the token in Rego with
// io.jwt.decode_verify. The Go benchmark (BenchmarkOPA in
// authz/bench_test.go) and the HTTP load comparison (test/load/gen for
// test/load/run.sh) both render it here, so that they measure one policy.
//
// The policy is package opa_authz; query data.opa_authz.decision. It reads
// the verification key at data.opa_bench.key (see Data) and the permissions
// from the default policy's data.json.
package opabaseline

import (
	_ "embed"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"text/template"
)

//go:embed policy.rego.tmpl
var policySource string

var policyTemplate = template.Must(template.New("policy.rego.tmpl").Funcs(template.FuncMap{
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s) // a JSON string is a Rego string
		return string(b), err
	},
}).Parse(policySource))

// Params fill the policy template. Every field is required.
type Params struct {
	// Constraint is the io.jwt.decode_verify constraint that takes the key
	// at data.opa_bench.key: "cert" for a JWKS, "secret" for an HMAC secret.
	Constraint string
	// Issuer and Audience are the iss and aud a token must carry.
	Issuer, Audience string
	// Action is the input's reference to the action name:
	// "input.action.name" for an input shaped like Verdict's own (the Go
	// benchmark), "input.action" for a string action as in a /v1/decide
	// body (the HTTP load comparison).
	Action string
}

// Policy returns the baseline policy rendered with p.
func Policy(p Params) (string, error) {
	if p.Constraint == "" || p.Issuer == "" || p.Audience == "" || p.Action == "" {
		return "", errors.New("opabaseline: Constraint, Issuer, Audience and Action are required")
	}
	var b strings.Builder
	if err := policyTemplate.Execute(&b, p); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Data returns a copy of data (the default policy's data.json) with key,
// the verification key for the policy's Constraint, at data.opa_bench.key.
func Data(data map[string]any, key string) map[string]any {
	out := maps.Clone(data)
	if out == nil {
		out = map[string]any{}
	}
	out["opa_bench"] = map[string]any{"key": key}
	return out
}
