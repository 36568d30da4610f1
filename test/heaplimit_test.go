package test

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestEvalHeapLimitByDefault: verdict serve under a soft memory limit
// (GOMEMLIMIT) and no limits.eval_heap_limit stops an evaluation a
// request sizes once the live heap passes half of that limit: the
// request is answered 500 policy_error saying why, long before its 60 s
// evaluation timeout; the metric counts it; the process serves on, and a
// request that sizes nothing much is allowed.
func TestEvalHeapLimitByDefault(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	authztest.WriteFile(t, filepath.Join(f.Dir, "sized", "authz", "authz.rego"),
		"package authz\n\ndefault allow := false\n\nallow if count(numbers.range(1, input.resource.n)) > 0\n")
	p := startVerdict(t, startOptions{Env: []string{"GOMEMLIMIT=256MiB"}, Args: []string{"--config", f.writeConfig(t, `addr: 127.0.0.1:0
decision_log: off
policy:
  dir: sized
limits:
  eval_timeout: 60s
`+tokensYAML)}})
	if !strings.Contains(p.Stderr.String(), "eval heap limit") || !strings.Contains(p.Stderr.String(), "bytes=134217728") {
		t.Errorf("no eval heap limit of half of GOMEMLIMIT in the log:\n%s", p.Stderr.String())
	}
	r := p.decide(t, `{"action":"x","resource":{"n":20000000}}`)
	if r.Status != http.StatusInternalServerError || !strings.Contains(string(r.Body), "policy_error") || !strings.Contains(string(r.Body), "limits.eval_heap_limit") {
		t.Fatalf("a sized evaluation: %d %s; want 500 policy_error naming limits.eval_heap_limit", r.Status, r.Body)
	}
	if m := metrics(t, p); !strings.Contains(m, "verdict_evaluations_heap_stopped_total 1\n") {
		t.Errorf("heap stops not counted:\n%s", grepLines(m, "heap"))
	}
	if a := p.decideOK(t, `{"action":"x","resource":{"n":3}}`); !a.Allow {
		t.Errorf("a small range after the stop: %+v, want allowed", a)
	}
}
