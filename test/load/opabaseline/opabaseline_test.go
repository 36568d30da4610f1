package opabaseline_test

import (
	"encoding/json"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

// TestPolicyDecides evaluates the rendered policy as both users do: a
// viewer's token may read orders and not delete them; a token for another
// audience is anonymous.
func TestPolicyDecides(t *testing.T) {
	iss := authztest.NewIssuer(t, "ES256")
	raw, err := fs.ReadFile(policies.FS(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	var base map[string]any
	if err := json.Unmarshal(raw, &base); err != nil {
		t.Fatal(err)
	}
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
