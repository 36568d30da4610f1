package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestDecisionLogReplay records decisions with the real server (the input
// of each in the log, a claim masked), then replays the log with the real
// binary against a changed policy: exactly the expected decisions flip and
// the exit status is 1; against the same policy nothing flips. The masked
// claim appears in no record.
func TestDecisionLogReplay(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	p := f.start(t, configWithPolicies(`decision_log:
  output: decisions.jsonl
  mask: [/input/subject/claims/email]
`), nil)
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}, "email": "alice@example.com"})
	ids := map[string]string{}
	for _, action := range []string{"orders:read", "orders:delete", "catalog:read"} {
		r := p.decide(t, mustJSON(t, map[string]any{"token": viewer, "action": action}))
		if r.Status != http.StatusOK {
			t.Fatalf("%s: %d %s", action, r.Status, r.Body)
		}
		ids[action] = r.JSON(t).ID
	}
	p.Signal(t, syscall.SIGTERM) // flushes the log
	p.Wait(t)

	log := filepath.Join(f.Dir, "decisions.jsonl")
	raw, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("alice@example.com")) {
		t.Errorf("a masked claim is in the decision log:\n%s", raw)
	}
	if n := bytes.Count(raw, []byte(`"input":{`)); n != 3 {
		t.Fatalf("%d records with an input, want 3:\n%s", n, raw)
	}
	if bytes.Contains(raw, []byte(viewer)) {
		t.Error("the raw token is in the decision log")
	}

	// The candidate: viewers may delete orders but no longer read them.
	candidate := filepath.Join(t.TempDir(), "candidate")
	copyPolicies(t, candidate)
	data := filepath.Join(candidate, "data.json")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, data, strings.Replace(string(b), `"viewer": ["orders:read", "catalog:read"]`, `"viewer": ["orders:delete", "catalog:read"]`, 1))

	out, code := runVerdict(t, "replay", "--log", log, "--policies", candidate, "--json")
	if code != 1 {
		t.Fatalf("replay against the candidate: exit %d, want 1\n%s", code, out)
	}
	var report struct {
		Total, Same, AllowToDeny, DenyToAllow, Errors int
		Flips                                         []struct {
			DecisionID string `json:"decision_id"`
			Was, Now   struct {
				Allow bool `json:"allow"`
			}
		} `json:"flips"`
	}
	if err := json.Unmarshal(out, &report); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	flipped := map[string]bool{}
	for _, fl := range report.Flips {
		flipped[fl.DecisionID] = fl.Now.Allow
	}
	if report.Total != 3 || report.Same != 1 || len(report.Flips) != 2 ||
		flipped[ids["orders:read"]] != false || !flipped[ids["orders:delete"]] {
		t.Errorf("report %s; want orders:read to deny and orders:delete to allow (ids %v)", out, ids)
	}
	if out, code := runVerdict(t, "replay", "--log", log, "--policies", f.Policies); code != 0 || !strings.Contains(string(out), "3 same") {
		t.Errorf("replay against the same policy: exit %d\n%s", code, out)
	}
}

// runVerdict runs the binary with args and returns its stdout and exit
// status.
func runVerdict(t *testing.T, args ...string) ([]byte, int) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), verdictBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("%v: %v\n%s", args, err, stderr.String())
	}
	return out, 0
}
