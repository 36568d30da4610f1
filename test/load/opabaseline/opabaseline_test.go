package opabaseline_test

import (
	"crypto/x509"
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/examples"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

// TestPolicyDecides evaluates the rendered policy as both users do: a
// viewer's token may read orders and not delete them; a token for another
// audience is anonymous.
func TestPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	base := readData(t, policies.FS())
	data := opabaseline.Data(base, string(authztest.JWKS(t, iss)))
	if _, ok := base["opa_bench"]; ok {
		t.Fatal("Data modified its argument")
	}
	viewer := iss.Mint(t, map[string]any{"roles": []string{"viewer"}})
	other := iss.Mint(t, map[string]any{"roles": []string{"viewer"}, "aud": "someone-else"})
	for _, shape := range []struct {
		ref    string
		action func(string) any
	}{
		{ref: "input.action.name", action: func(a string) any { return map[string]any{"name": a} }},
		{ref: "input.action", action: func(a string) any { return a }},
	} {
		t.Run(shape.ref, func(t *testing.T) {
			policy, err := opabaseline.Policy(opabaseline.Params{Constraint: "cert", Issuer: iss.Name, Audience: iss.Audience, Action: shape.ref})
			if err != nil {
				t.Fatal(err)
			}
			pq, err := rego.New(rego.Query("data.opa_authz.decision"), rego.Module("opa_authz.rego", policy),
				rego.Store(inmem.NewFromObject(data))).PrepareForEval(t.Context())
			if err != nil {
				t.Fatalf("the rendered policy does not compile: %v", err)
			}
			for _, tc := range []struct {
				token, action, wantReason string
				wantAllow                 bool
			}{
				{token: viewer, action: "orders:read", wantAllow: true, wantReason: "role viewer grants orders:read"},
				{token: viewer, action: "orders:delete", wantReason: "no role grants orders:delete"},
				{token: other, action: "orders:read", wantReason: "anonymous access to orders:read is not allowed"},
			} {
				rs, err := pq.Eval(t.Context(), rego.EvalInput(map[string]any{"token": tc.token, "action": shape.action(tc.action)}))
				if err != nil || len(rs) != 1 {
					t.Fatalf("%s: %v, %v", tc.action, rs, err)
				}
				d := rs[0].Expressions[0].Value.(map[string]any)
				reasons, _ := json.Marshal(d["reasons"])
				if d["allow"] != tc.wantAllow || !strings.Contains(string(reasons), tc.wantReason) {
					t.Errorf("%s: allow %v, reasons %s; want allow %v, %q", tc.action, d["allow"], reasons, tc.wantAllow, tc.wantReason)
				}
			}
		})
	}
}

func TestPolicyNeedsEveryParam(t *testing.T) {
	if _, err := opabaseline.Policy(opabaseline.Params{Constraint: "cert", Issuer: "https://i", Audience: "a"}); err == nil {
		t.Error("a policy without Action was rendered")
	}
}

// decide evaluates data.opa_authz.decision on input with modules and data.
func decide(t *testing.T, modules map[string]string, data map[string]any, input map[string]any) (bool, string) {
	t.Helper()
	opts := []func(*rego.Rego){rego.Query("data.opa_authz.decision"), rego.Store(inmem.NewFromObject(data)), rego.Input(input)}
	for name, src := range modules {
		opts = append(opts, rego.Module(name, src))
	}
	rs, err := rego.New(opts...).Eval(t.Context())
	if err != nil || len(rs) != 1 {
		t.Fatalf("%v: %v, %v", input, rs, err)
	}
	d := rs[0].Expressions[0].Value.(map[string]any)
	reasons, _ := json.Marshal(d["reasons"])
	return d["allow"] == true, string(reasons)
}

// exampleData is an example's data.json with the key at data.opa_bench.
func exampleData(t *testing.T, name string, key string) map[string]any {
	t.Helper()
	fsys, err := examples.FS(name)
	if err != nil {
		t.Fatal(err)
	}
	return opabaseline.Data(readData(t, fsys), key)
}

// readData decodes fsys's data.json (ReadData), failing the test when it
// cannot.
func readData(t *testing.T, fsys fs.FS) map[string]any {
	t.Helper()
	data, err := opabaseline.ReadData(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestRESTPolicyDecides: the baseline with RESTModule names the action from
// the method and the path, as the default policy does.
func TestRESTPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	base := readData(t, policies.FS())
	policy, err := opabaseline.Policy(opabaseline.Params{Constraint: "cert", Issuer: iss.Name, Audience: iss.Audience, Action: opabaseline.RESTAction})
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]string{"policy.rego": policy, "rest.rego": opabaseline.RESTModule()}
	data := opabaseline.Data(base, string(authztest.JWKS(t, iss)))
	viewer := iss.Mint(t, map[string]any{"roles": []string{"viewer"}})
	for _, tc := range []struct {
		method, path, wantReason string
		wantAllow                bool
	}{
		{"GET", "/orders/42", "role viewer grants orders:read", true},
		{"get", "/orders/42?x=1", "role viewer grants orders:read", true},
		{"POST", "/orders/42", "no role grants orders:write", false},
		{"DELETE", "/orders/42", "no role grants orders:delete", false},
		{"GET", "/catalog/7", "catalog:read is public", true},
		{"TRACE", "/orders/42", "[]", false},
	} {
		allow, reasons := decide(t, modules, data, map[string]any{"method": tc.method, "path": tc.path, "token": viewer})
		if allow != tc.wantAllow || !strings.Contains(reasons, tc.wantReason) {
			t.Errorf("%s %s: allow %v, reasons %s; want %v, %q", tc.method, tc.path, allow, reasons, tc.wantAllow, tc.wantReason)
		}
	}
}

// TestEnvoyPolicyDecides: the baseline with EnvoyModule decides Envoy's
// CheckRequest as RESTModule decides a method, path and token, the token
// taken from a Bearer Authorization header only.
func TestEnvoyPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	policy, err := opabaseline.Policy(opabaseline.Params{Constraint: "cert", Issuer: iss.Name, Audience: iss.Audience,
		Action: opabaseline.RESTAction, Token: opabaseline.EnvoyToken})
	if err != nil {
		t.Fatal(err)
	}
	modules := map[string]string{"policy.rego": policy, "envoy.rego": opabaseline.EnvoyModule()}
	data := opabaseline.Data(readData(t, policies.FS()), string(authztest.JWKS(t, iss)))
	viewer := iss.Mint(t, map[string]any{"roles": []string{"viewer"}})
	for _, tc := range []struct {
		method, path, authorization, wantReason string
		wantAllow                               bool
	}{
		{"GET", "/orders/42", "Bearer " + viewer, "role viewer grants orders:read", true},
		{"POST", "/orders/42", "Bearer " + viewer, "no role grants orders:write", false},
		{"DELETE", "/orders/42?x=1", "Bearer " + viewer, "no role grants orders:delete", false},
		{"GET", "/orders/42", "", "anonymous access to orders:read is not allowed", false},
		{"GET", "/orders/42", "Basic " + viewer, "anonymous access to orders:read is not allowed", false},
		{"GET", "/catalog/7", "", "anonymous access to catalog:read is public", true},
	} {
		headers := map[string]any{":path": tc.path}
		if tc.authorization != "" {
			headers["authorization"] = tc.authorization
		}
		input := map[string]any{"attributes": map[string]any{"request": map[string]any{"http": map[string]any{
			"method": tc.method, "path": tc.path, "headers": headers}}}}
		allow, reasons := decide(t, modules, data, input)
		if allow != tc.wantAllow || !strings.Contains(reasons, tc.wantReason) {
			t.Errorf("%s %s %.10q: allow %v, reasons %s; want %v, %q", tc.method, tc.path, tc.authorization, allow, reasons, tc.wantAllow, tc.wantReason)
		}
	}
}

// TestCallerPolicyDecides: roles AND the calling-service allowlist, the
// caller's certificate verified against the CA in data, named as Verdict
// names it.
func TestCallerPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	ca, other := authztest.NewCA(t, "load CA"), authztest.NewCA(t, "other CA")
	policy, err := opabaseline.CallerPolicy(opabaseline.Params{Constraint: "cert", Issuer: iss.Name, Audience: iss.Audience, Action: "input.action"})
	if err != nil {
		t.Fatal(err)
	}
	data := exampleData(t, "caller", string(authztest.JWKS(t, iss)))
	data["opa_bench"].(map[string]any)["ca"] = string(ca.PEM())
	svc := func(c *authztest.CA, name string) string {
		return string(c.Issue(t, authztest.LeafOptions{CommonName: name, URIs: []string{"spiffe://load.test/ns/shop/sa/" + name}}).CertPEM)
	}
	serverOnly := string(ca.Issue(t, authztest.LeafOptions{URIs: []string{"spiffe://load.test/ns/shop/sa/web"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).CertPEM)
	byDNS := string(ca.Issue(t, authztest.LeafOptions{CommonName: "x", DNSNames: []string{"payments.shop"}}).CertPEM)
	viewer := iss.Mint(t, map[string]any{"roles": []string{"viewer"}})
	modules := map[string]string{"policy.rego": policy}
	for _, tc := range []struct {
		name, cert, action, wantReason string
		wantAllow                      bool
	}{
		{"web reads", svc(ca, "web"), "orders:read", "role viewer grants orders:read to service web", true},
		{"payments reads", svc(ca, "payments"), "orders:read", "role viewer grants orders:read to service payments", true},
		{"reports is not allowed", svc(ca, "reports"), "orders:read", "service reports may not call orders:read", false},
		{"unknown service", svc(ca, "unknown"), "orders:read", "caller spiffe://load.test/ns/shop/sa/unknown is not a known service", false},
		{"role does not grant", svc(ca, "web"), "orders:write", "no role grants orders:write", false},
		{"another CA", svc(other, "web"), "orders:read", "the caller is not authenticated", false},
		{"not for client auth", serverOnly, "orders:read", "the caller is not authenticated", false},
		{"named by DNS", byDNS, "orders:read", "caller payments.shop is not a known service", false},
		{"no certificate", "", "orders:read", "the caller is not authenticated", false},
	} {
		allow, reasons := decide(t, modules, data, map[string]any{"token": viewer, "action": tc.action, "caller": map[string]any{"certificate": tc.cert}})
		if allow != tc.wantAllow || !strings.Contains(reasons, tc.wantReason) {
			t.Errorf("%s: allow %v, reasons %s; want %v, %q", tc.name, allow, reasons, tc.wantAllow, tc.wantReason)
		}
	}
}

// TestABACPolicyDecides: tenant and owner attributes against the claims.
func TestABACPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	policy, err := opabaseline.ABACPolicy(opabaseline.Params{Constraint: "cert", Issuer: iss.Name, Audience: iss.Audience, Action: "input.action"})
	if err != nil {
		t.Fatal(err)
	}
	data := exampleData(t, "abac", string(authztest.JWKS(t, iss)))
	editor := iss.Mint(t, map[string]any{"sub": "user-1", "tenant": "tenant-1", "roles": []string{"editor"}})
	modules := map[string]string{"policy.rego": policy}
	for _, tc := range []struct {
		action     string
		resource   map[string]any
		wantAllow  bool
		wantReason string
	}{
		{"orders:read", map[string]any{"owner": "user-2", "tenant": "tenant-1"}, true, "role editor grants orders:read in tenant tenant-1"},
		{"orders:write", map[string]any{"owner": "user-1", "tenant": "tenant-1"}, true, "role editor grants orders:write in tenant tenant-1"},
		{"orders:write", map[string]any{"owner": "user-2", "tenant": "tenant-1"}, false, "only the owner may orders:write"},
		{"orders:read", map[string]any{"owner": "user-1", "tenant": "tenant-2"}, false, "the subject is not in tenant tenant-2"},
		{"orders:read", map[string]any{"owner": "user-1"}, false, "the subject is not in tenant (none)"},
		{"orders:delete", map[string]any{"owner": "user-1", "tenant": "tenant-1"}, false, "no role grants orders:delete"},
	} {
		allow, reasons := decide(t, modules, data, map[string]any{"token": editor, "action": tc.action, "resource": tc.resource})
		if allow != tc.wantAllow || !strings.Contains(reasons, tc.wantReason) {
			t.Errorf("%s %v: allow %v, reasons %s; want %v, %q", tc.action, tc.resource, allow, reasons, tc.wantAllow, tc.wantReason)
		}
	}
}
