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
//
// The load comparison's other workloads have their own OPA policies here,
// each the counterpart of the policy Verdict serves for that workload:
// RESTModule (added to Policy, for actions named from a method and path, as
// the default policy names them; EnvoyModule, the same for Envoy's
// CheckRequest as opa-envoy-plugin gives it), CallerPolicy (test/load/examples/caller:
// roles AND a calling-service allowlist, the caller's certificate verified
// in Rego) and ABACPolicy (test/load/examples/abac: resource attributes
// against claims). They share Params, package and query.
package opabaseline

import (
	_ "embed"
	"encoding/json"
	"errors"
	"io/fs"
	"maps"
	"strings"
	"text/template"
)

//go:embed policy.rego.tmpl
var policySource string

//go:embed caller.rego.tmpl
var callerSource string

//go:embed abac.rego.tmpl
var abacSource string

//go:embed rest.rego
var restSource string

var funcs = template.FuncMap{
	"quote": func(s string) (string, error) {
		b, err := json.Marshal(s) // a JSON string is a Rego string
		return string(b), err
	},
}

var (
	policyTemplate = template.Must(template.New("policy.rego.tmpl").Funcs(funcs).Parse(policySource))
	callerTemplate = template.Must(template.New("caller.rego.tmpl").Funcs(funcs).Parse(callerSource))
	abacTemplate   = template.Must(template.New("abac.rego.tmpl").Funcs(funcs).Parse(abacSource))
)

// RESTAction is the Action for Policy that names the action from the
// input's method and path; RESTModule defines it.
const RESTAction = "rest_action"

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
	// Token is the input's reference to the bearer token; empty means
	// input.token. Policy only: the other templates read input.token.
	Token string
}

// Policy returns the baseline policy rendered with p.
func Policy(p Params) (string, error) { return render(policyTemplate, p) }

// CallerPolicy returns the baseline of the "cert" workload rendered with p:
// test/load/examples/caller written for OPA. Its data is that example's
// data.json with the verification key (Data) and the callers' trusted CA
// (PEM) at data.opa_bench.ca.
func CallerPolicy(p Params) (string, error) { return render(callerTemplate, p) }

// ABACPolicy returns the baseline of the "abac" workload rendered with p:
// test/load/examples/abac written for OPA. Its data is that example's
// data.json with the verification key (Data).
func ABACPolicy(p Params) (string, error) { return render(abacTemplate, p) }

// RESTModule returns a second module for Policy rendered with Action:
// RESTAction, naming the action from input.method and input.path.
func RESTModule() string { return restSource }

// EnvoyToken is the Token for Policy with EnvoyModule: the bearer token of
// the Authorization header of Envoy's CheckRequest.
const EnvoyToken = "envoy_token"

// EnvoyModule returns RESTModule for the input opa-envoy-plugin gives a
// policy, Envoy's CheckRequest: the method and path of
// input.attributes.request.http, and EnvoyToken from its Authorization
// header, for Policy rendered with Action: RESTAction, Token: EnvoyToken.
func EnvoyModule() string {
	return envoyReplacer.Replace(restSource) + envoySource
}

var envoyReplacer = strings.NewReplacer(
	"input.method", "input.attributes.request.http.method",
	"input.path", "input.attributes.request.http.path")

const envoySource = `
envoy_token := substring(h, 7, -1) if {
	h := input.attributes.request.http.headers.authorization
	startswith(h, "Bearer ")
}
`

func render(t *template.Template, p Params) (string, error) {
	if p.Constraint == "" || p.Issuer == "" || p.Audience == "" || p.Action == "" {
		return "", errors.New("opabaseline: Constraint, Issuer, Audience and Action are required")
	}
	var b strings.Builder
	if err := t.Execute(&b, p); err != nil {
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

// ReadData decodes the data.json of a policy set, for Data: the default
// policy's (policies.FS()) for Policy, an example's (examples.FS) for
// CallerPolicy and ABACPolicy.
func ReadData(fsys fs.FS) (map[string]any, error) {
	raw, err := fs.ReadFile(fsys, "data.json")
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, err
	}
	return data, nil
}
