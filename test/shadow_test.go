package test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestShadowPolicyUnderLoad serves the default policies with a shadow
// candidate in which viewers may delete orders but no longer read them,
// under concurrent load: every answer is the live policy's; the shadow
// counts exactly the flips the candidate makes (every orders:read an
// allow→deny, every orders:delete a deny→allow, the rest the same); the
// decision log has one record per decision, with the candidate's answer
// on exactly the flipped ones; /v1/status names both revisions.
func TestShadowPolicyUnderLoad(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	candidate := filepath.Join(f.Dir, "candidate")
	copyPolicies(t, candidate)
	data := filepath.Join(candidate, "data.json")
	b, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	changed := strings.Replace(string(b), `"viewer": ["orders:read", "catalog:read"]`, `"viewer": ["orders:delete", "catalog:read"]`, 1)
	if changed == string(b) {
		t.Fatal("the default policies' viewer role changed; update this test")
	}
	authztest.WriteFile(t, data, changed)

	p := f.start(t, `addr: 127.0.0.1:0
policy:
  dir: policies
  shadow:
    dir: candidate
    queue: 100000
decision_log:
  output: decisions.jsonl
`+tokensYAML, nil)
	st, raw := status(t, p)
	var withShadow struct {
		Shadow struct {
			Ready    bool   `json:"ready"`
			Revision string `json:"revision"`
		} `json:"shadow"`
	}
	eventually(t, 10*time.Second, func() string {
		_, raw = status(t, p)
		if err := json.Unmarshal([]byte(raw), &withShadow); err != nil || !withShadow.Shadow.Ready {
			return "shadow not ready: " + raw
		}
		return ""
	})
	if withShadow.Shadow.Revision == "" || withShadow.Shadow.Revision == st.Revision {
		t.Fatalf("shadow revision %q beside live %q:\n%s", withShadow.Shadow.Revision, st.Revision, raw)
	}

	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	live := map[string]bool{"orders:read": true, "orders:delete": false, "catalog:read": true, "inventory:read": false}
	const workers, rounds = 8, 100
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				for action, want := range live {
					r := p.decide(t, mustJSON(t, map[string]any{"token": viewer, "action": action}))
					if r.Status != http.StatusOK {
						t.Errorf("%s: %d %s", action, r.Status, r.Body)
						return
					}
					if a := r.JSON(t); a.Allow != want {
						t.Errorf("%s: allow %v, want the live policy's %v", action, a.Allow, want)
					}
				}
			}
		})
	}
	wg.Wait()

	n := workers * rounds
	want := map[string]int{"same": 2 * n, "allow_to_deny": n, "deny_to_allow": n, "error": 0, "skipped": 0}
	eventually(t, 30*time.Second, func() string {
		got := shadowCounts(t, p)
		for o, w := range want {
			if got[o] != w {
				return fmt.Sprintf("verdict_shadow_decisions_total %v, want %v", got, want)
			}
		}
		return ""
	})

	p.Signal(t, syscall.SIGTERM) // flushes the log
	p.Wait(t)
	recs, err := os.ReadFile(filepath.Join(f.Dir, "decisions.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	lines := 0
	sc := bufio.NewScanner(bytes.NewReader(recs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines++
		var rec struct {
			Allow  bool `json:"allow"`
			Action struct {
				Name string `json:"name"`
			} `json:"action"`
			Shadow *struct {
				Allow    bool   `json:"allow"`
				Revision string `json:"revision"`
			} `json:"shadow"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("record %d: %v: %s", lines, err, sc.Bytes())
		}
		flipped := rec.Action.Name == "orders:read" || rec.Action.Name == "orders:delete"
		switch {
		case flipped != (rec.Shadow != nil):
			t.Fatalf("record %d (%s): shadow %+v", lines, rec.Action.Name, rec.Shadow)
		case flipped && (rec.Shadow.Allow == rec.Allow || rec.Shadow.Revision != withShadow.Shadow.Revision):
			t.Fatalf("record %d (%s): live allow %v, shadow %+v", lines, rec.Action.Name, rec.Allow, rec.Shadow)
		}
	}
	if lines != 4*n {
		t.Errorf("%d records, want %d", lines, 4*n)
	}
}

var shadowMetric = regexp.MustCompile(`(?m)^verdict_shadow_decisions_total\{outcome="(\w+)"\} (\d+)$`)

// shadowCounts reads verdict_shadow_decisions_total from /metrics.
func shadowCounts(t *testing.T, p *process) map[string]int {
	t.Helper()
	got := map[string]int{}
	for _, m := range shadowMetric.FindAllStringSubmatch(metrics(t, p), -1) {
		got[m[1]], _ = strconv.Atoi(m[2])
	}
	return got
}
