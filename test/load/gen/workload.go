package main

import (
	"bytes"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/examples"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

// tcase is one request template of a workload and its designed answer.
type tcase struct {
	verdict, opa string // request templates (see the package documentation)
	allow        bool
	reason       string // a substring of a reason both servers give
	what         string
}

// workload is everything one workload needs on both sides.
type workload struct {
	name  string
	api   string // Verdict's decision metric label: decide or check
	pool  string // the measured token pool
	warm  string // the pool the warm-up cycles (never a new-token pool)
	fresh bool   // a new-token pool: a fresh server per measured run
	// Verdict: the example policy set served ("" = the embedded default);
	// callers: trust 127.0.0.1 to forward a certificate chaining to ca.pem.
	policy  string
	callers bool
	// OPA: modules and data.
	opaModules map[string]string
	opaData    map[string]any
	// opa-envoy-plugin (test/load/extauthz.sh): the modules answering
	// Envoy's CheckRequest, with opaData; none for a workload it does not run.
	envoyModules map[string]string
	cases        []tcase
}

func generate(out, alg string, n, nNew int, names []string, ttl time.Duration) error {
	dir := filepath.Join(out, strings.ToLower(alg))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "load.lua"), []byte(luaScript), 0o600); err != nil {
		return err
	}
	s, err := newSigner(alg)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(s.public)
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwks := string(s.jwks())
	want := func(name string) bool { return slices.Contains(names, name) }

	now := time.Now()
	pools := []struct {
		file   string
		count  int
		needed bool
		line   func(i int) (claims map[string]any, fields []string)
	}{
		{"tokens.txt", n, want("cached") || want("cert") || want("rest") || want("new5k") || want("newall"),
			func(i int) (map[string]any, []string) {
				return map[string]any{"sub": "user-" + strconv.Itoa(i%5000), "jti": "pool-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
			}},
		{"tokens-abac.txt", n, want("abac"), func(i int) (map[string]any, []string) {
			sub, tenant, other := "user-"+strconv.Itoa(i), "tenant-"+strconv.Itoa(i%50), "tenant-"+strconv.Itoa((i+1)%50)
			return map[string]any{"sub": sub, "jti": "abac-" + strconv.Itoa(i), "tenant": tenant, "roles": []string{"editor"}},
				[]string{sub, tenant, other}
		}},
		// Subjects apart from the warm-up pool's (user-0 … user-999), so that
		// a measured run starts with none of its subjects seen.
		{"tokens-new5k.txt", nNew, want("new5k"), func(i int) (map[string]any, []string) {
			return map[string]any{"sub": "user5k-" + strconv.Itoa(i%5000), "jti": "new5k-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
		}},
		{"tokens-newall.txt", nNew, want("newall"), func(i int) (map[string]any, []string) {
			return map[string]any{"sub": "user-new-" + strconv.Itoa(i), "jti": "newall-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
		}},
	}
	for _, p := range pools {
		if !p.needed {
			continue
		}
		if p.count < 1 {
			return fmt.Errorf("%s: pool size %d (set -new for the new-token workloads)", p.file, p.count)
		}
		if err := mintFile(filepath.Join(dir, p.file), s, p.count, now, ttl, p.line); err != nil {
			return err
		}
	}

	var pki *callerPKI
	if want("cert") {
		if pki, err = newCallerPKI(now); err != nil {
			return err
		}
	}
	for _, name := range names {
		w, err := newWorkload(name, alg, jwks, pki)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := w.write(filepath.Join(dir, name), alg, pubPEM, pki); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Request templates. Verdict's /v1/decide and OPA's data API take the same
// JSON question; OPA's wraps it in {"input": ...}.
func decideTemplate(body string) string {
	return "POST\t/v1/decide\tContent-Type: application/json\t" + body
}

func opaTemplate(input string) string {
	return "POST\t/v1/data/opa_authz/decision\tContent-Type: application/json\t{\"input\":" + input + "}"
}

// jsonBody marshals v without HTML escaping (the templates' placeholders and
// PEM stay readable; the JSON is the same).
func jsonBody(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fail(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// sameQuestion is a case asked as the same JSON to both servers.
func sameQuestion(body map[string]any, allow bool, reason, what string) tcase {
	b := jsonBody(body)
	return tcase{verdict: decideTemplate(b), opa: opaTemplate(b), allow: allow, reason: reason, what: what}
}

func newWorkload(name, alg, jwks string, pki *callerPKI) (*workload, error) {
	defaultData, err := opabaseline.ReadData(policies.FS())
	if err != nil {
		return nil, err
	}
	params := opabaseline.Params{Constraint: "cert", Issuer: issuer, Audience: audience, Action: "input.action"}
	w := &workload{name: name, api: "decide", pool: "tokens.txt", warm: "tokens.txt"}
	readViewer := sameQuestion(map[string]any{"token": "@1@", "action": "orders:read"}, true, "role viewer grants orders:read", "a viewer reads an order")
	switch name {
	case "cached", "new5k", "newall":
		// The default policy; the action is a string in the /v1/decide body.
		policy, err := opabaseline.Policy(params)
		if err != nil {
			return nil, err
		}
		w.opaModules = map[string]string{"policy.rego": policy}
		w.opaData = opabaseline.Data(defaultData, jwks)
		w.cases = []tcase{readViewer}
		if name != "cached" {
			w.pool, w.fresh = "tokens-"+name+".txt", true
		}
	case "rest":
		// Forward-auth: the action is named from the method and path.
		params.Action = opabaseline.RESTAction
		policy, err := opabaseline.Policy(params)
		if err != nil {
			return nil, err
		}
		w.api = "check"
		w.opaModules = map[string]string{"policy.rego": policy, "rest.rego": opabaseline.RESTModule()}
		w.opaData = opabaseline.Data(defaultData, jwks)
		params.Token = opabaseline.EnvoyToken
		envoyPolicy, err := opabaseline.Policy(params)
		if err != nil {
			return nil, err
		}
		w.envoyModules = map[string]string{"policy.rego": envoyPolicy, "envoy.rego": opabaseline.EnvoyModule()}
		rest := func(method string, allow bool, reason string) tcase {
			return tcase{
				verdict: "GET\t/v1/check\tX-Forwarded-Method: " + method + "\tX-Forwarded-Uri: /orders/@N@\tAuthorization: Bearer @1@\t",
				opa:     opaTemplate(jsonBody(map[string]any{"method": method, "path": "/orders/@N@", "token": "@1@"})),
				allow:   allow, reason: reason, what: "a viewer: " + method + " /orders/<new id>",
			}
		}
		get := rest("GET", true, "role viewer grants orders:read")
		w.cases = []tcase{get, get, rest("POST", false, "no role grants orders:write"), get,
			get, rest("DELETE", false, "no role grants orders:delete"), get, get}
	case "cert":
		if err := w.useExample("caller", opabaseline.CallerPolicy, params, jwks); err != nil {
			return nil, err
		}
		w.callers = true
		w.opaData["opa_bench"].(map[string]any)["ca"] = string(pki.caPEM)
		q := func(svc, action string, allow bool, reason string) tcase {
			body := map[string]any{"token": "@1@", "action": action, "caller": map[string]any{"certificate": string(pki.leaves[svc])}}
			return sameQuestion(body, allow, reason, "a viewer asks "+action+" through service "+svc)
		}
		w.cases = []tcase{
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("payments", "orders:read", true, "role viewer grants orders:read to service payments"),
			q("reports", "orders:read", false, "service reports may not call orders:read"),
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("payments", "orders:read", true, "role viewer grants orders:read to service payments"),
			q("web", "orders:write", false, "no role grants orders:write"),
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("unknown", "orders:read", false, "caller "+trustDomain+"unknown is not a known service"),
		}
	case "abac":
		if err := w.useExample("abac", opabaseline.ABACPolicy, params, jwks); err != nil {
			return nil, err
		}
		w.pool, w.warm = "tokens-abac.txt", "tokens-abac.txt"
		// Token line fields: @1@ token, @2@ sub, @3@ tenant, @4@ another tenant.
		q := func(action, owner, tenant string, allow bool, reason, what string) tcase {
			body := map[string]any{"token": "@1@", "action": action,
				"resource": map[string]any{"type": "order", "id": "@N@", "owner": owner, "tenant": tenant}}
			return sameQuestion(body, allow, reason, what)
		}
		w.cases = []tcase{
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
			q("orders:write", "@2@", "@3@", true, "role editor grants orders:write in tenant", "write own order"),
			q("orders:read", "@2@", "@3@", true, "role editor grants orders:read in tenant", "read own order"),
			q("orders:write", "user-someone", "@3@", false, "only the owner may orders:write", "write another's order"),
			q("orders:read", "@2@", "@4@", false, "the subject is not in tenant", "read in another tenant"),
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
			q("orders:delete", "@2@", "@3@", false, "no role grants orders:delete", "delete own order"),
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
		}
	default:
		return nil, fmt.Errorf("unknown workload")
	}
	return w, nil
}

func (w *workload) allowShare() float64 {
	allow := 0
	for _, c := range w.cases {
		if c.allow {
			allow++
		}
	}
	return float64(allow) / float64(len(w.cases))
}

// write writes the workload's directory.
func (w *workload) write(dir, alg string, pubPEM []byte, pki *callerPKI) error {
	for _, d := range []string{"verdict", "opa/bundle"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "# generated by test/load/gen\npool=%s\nwarm=%s\nfresh=%d\napi=%s\nallow=%.4f\ncases=%d\n",
		w.pool, w.warm, map[bool]int{false: 0, true: 1}[w.fresh], w.api, w.allowShare(), len(w.cases))
	var vt, ot, ex strings.Builder
	for _, c := range w.cases {
		vt.WriteString(c.verdict + "\n")
		ot.WriteString(c.opa + "\n")
		fmt.Fprintf(&ex, "%s\t%s\t%s\n", map[bool]string{false: "deny", true: "allow"}[c.allow], c.reason, c.what)
	}
	files := map[string][]byte{
		"workload.conf":        []byte(conf.String()),
		"verdict.tmpl":         []byte(vt.String()),
		"opa.tmpl":             []byte(ot.String()),
		"expect.txt":           []byte(ex.String()),
		"verdict/pub.pem":      pubPEM,
		"verdict/verdict.yaml": verdictConfig(alg, w.policy != "", w.callers),
		"opa/config.yaml":      []byte(opaConfig),
	}
	for name, src := range w.opaModules {
		files["opa/bundle/"+name] = []byte(src)
	}
	data, err := json.MarshalIndent(w.opaData, "", "  ")
	if err != nil {
		return err
	}
	files["opa/bundle/data.json"] = data
	if w.envoyModules != nil {
		if err := os.MkdirAll(filepath.Join(dir, "opa-envoy", "bundle"), 0o700); err != nil {
			return err
		}
		for name, src := range w.envoyModules {
			files["opa-envoy/bundle/"+name] = []byte(src)
		}
		files["opa-envoy/bundle/data.json"] = data
		files["opa-envoy/config.yaml"] = []byte(opaConfig + opaEnvoyConfig)
	}
	if w.callers {
		files["verdict/ca.pem"] = pki.caPEM
	}
	if w.policy != "" {
		fsys, err := examples.FS(w.policy)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "verdict", "policy"), 0o700); err != nil {
			return err
		}
		err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			files["verdict/policy/"+p] = b
			return err
		})
		if err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func verdictConfig(alg string, examplePolicy, callers bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# Verdict configuration for the HTTP load comparison (generated).
decision_log: "off"
tokens:
  issuers:
    - issuer: %q
      audiences: [%q]
      algorithms: [%s]
      public_key_file: pub.pem
`, issuer, audience, alg)
	if examplePolicy {
		b.WriteString("policy:\n  dir: policy\n")
	}
	if callers {
		// The load generator is the proxy that forwards the calling
		// service's certificate in the /v1/decide body.
		b.WriteString("callers:\n  trusted_proxies: [127.0.0.1/32]\n  trust_bundle_file: ca.pem\n")
	}
	return []byte(b.String())
}

// useExample has Verdict serve the example policy set name
// (test/load/examples) and gives OPA its counterpart: the module policyOf
// renders with params, and the example's data.json with the key set jwks.
func (w *workload) useExample(name string, policyOf func(opabaseline.Params) (string, error), params opabaseline.Params, jwks string) error {
	policy, err := policyOf(params)
	if err != nil {
		return err
	}
	fsys, err := examples.FS(name)
	if err != nil {
		return err
	}
	data, err := opabaseline.ReadData(fsys)
	if err != nil {
		return err
	}
	w.policy = name
	w.opaModules = map[string]string{"policy.rego": policy}
	w.opaData = opabaseline.Data(data, jwks)
	return nil
}

// opaConfig is OPA at its best: the io_jwt verified-token cache turned on
// (OPA v1.22.3 ships it disabled; the parsed-key cache io_jwt_keys is on by
// default). No decision logs are configured, so none are written; run.sh
// passes --log-level error, which also turns off per-request logging.
const opaConfig = `caching:
  inter_query_builtin_value_cache:
    named:
      io_jwt:
        max_num_entries: 10000
`

// opaEnvoyConfig adds opa-envoy-plugin's ext_authz gRPC server to opaConfig,
// answering Check with the baseline's allow (test/load/extauthz.sh sets its
// address with --set).
const opaEnvoyConfig = `plugins:
  envoy_ext_authz_grpc:
    addr: 127.0.0.1:9191
    path: opa_authz/allow
`
