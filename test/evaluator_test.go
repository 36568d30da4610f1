package test

import (
	"strings"
	"testing"
)

// TestEvaluatorSetting: the binary serves the default policies on the
// compiled evaluator unless policy.evaluator says topdown, both give the
// same answers, and /v1/status says which evaluator serves and why.
func TestEvaluatorSetting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		setting string // policy.evaluator
		want    string // /v1/status evaluator prefix
	}{
		{"", "compiled (planned in "},
		{"topdown", "topdown: configured"},
		{"compiled", "compiled (planned in "},
	} {
		t.Run("evaluator="+tc.setting, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			cfg := configWithPolicies("decision_log: off\n")
			if tc.setting != "" {
				cfg = strings.Replace(cfg, "policy:\n", "policy:\n  evaluator: "+tc.setting+"\n", 1)
			}
			p := f.start(t, cfg, nil)
			if st, raw := status(t, p); !strings.HasPrefix(st.Evaluator, tc.want) {
				t.Fatalf("/v1/status evaluator %q, want %q...:\n%s", st.Evaluator, tc.want, raw)
			}
			viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
			for _, c := range []struct {
				body   string
				allow  bool
				reason string
			}{
				{`{"token":"` + viewer + `","action":"orders:read"}`, true, "role viewer grants orders:read"},
				{`{"token":"` + viewer + `","action":"orders:delete"}`, false, "no role grants orders:delete"},
				{`{"action":{"method":"GET","path":"/catalog/7"}}`, true, "anonymous access to catalog:read is public"},
			} {
				a := p.decideOK(t, c.body)
				if a.Allow != c.allow || len(a.Reasons) == 0 || a.Reasons[0] != c.reason {
					t.Errorf("%s: %+v, want allow %v, %q", c.body, a, c.allow, c.reason)
				}
			}
		})
	}
}
