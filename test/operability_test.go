package test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestVersionAndDiagnostics: the binary says which build it is (verdict
// version, --version, verdict_build_info, /v1/status), and with
// diagnostic_addr status and metrics move to a plain-HTTP listener of
// their own while health stays on both. The configuration reads its
// address from the environment.
func TestVersionAndDiagnostics(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := runVerdict(t, args...)
		if code != 0 || !strings.HasPrefix(string(out), "verdict "+e2eVersion) {
			t.Errorf("verdict %v: exit %d %q", args, code, out)
		}
	}

	f := newFixture(t)
	p := startVerdict(t, startOptions{
		Args: []string{"--config", f.writeConfig(t, configWithPolicies("decision_log: off\ndiagnostic_addr: ${DIAG_ADDR}\n"))},
		Env:  []string{"DIAG_ADDR=127.0.0.1:0"},
	})
	var diag string
	eventually(t, 5*time.Second, func() string {
		m := regexp.MustCompile(`listening addr=(\S+) scheme=http serves=diagnostics`).FindStringSubmatch(p.Stderr.String())
		if m == nil {
			return "no diagnostics listener logged:\n" + p.Stderr.String()
		}
		diag = "http://" + m[1]
		return ""
	})
	for _, tc := range []struct {
		url  string
		want int
	}{
		{p.Base + "/health/ready", 200}, {p.Base + "/v1/status", 404}, {p.Base + "/metrics", 404},
		{diag + "/health/ready", 200}, {diag + "/v1/status", 200}, {diag + "/metrics", 200},
	} {
		if r := do(t, p.Client, http.MethodGet, tc.url, nil, nil); r.Status != tc.want {
			t.Errorf("GET %s: %d, want %d", tc.url, r.Status, tc.want)
		}
	}
	metrics := do(t, p.Client, http.MethodGet, diag+"/metrics", nil, nil)
	if !regexp.MustCompile(`verdict_build_info\{goversion="go[^"]+",revision="[^"]*",version="` + regexp.QuoteMeta(e2eVersion) + `"\} 1`).Match(metrics.Body) {
		t.Errorf("/metrics lacks verdict_build_info for %s", e2eVersion)
	}
	status := do(t, p.Client, http.MethodGet, diag+"/v1/status", nil, nil)
	if !strings.Contains(string(status.Body), `"version": "`+e2eVersion+`"`) {
		t.Errorf("/v1/status lacks the version:\n%s", status.Body)
	}
}
