package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// todoDecisions is the AuthZEN WG's published Todo decision table (see
// testdata/authzen/README.md).
type todoDecisions struct {
	Evaluation []struct {
		Request  json.RawMessage `json:"request"`
		Expected bool            `json:"expected"`
	} `json:"evaluation"`
	Evaluations []struct {
		Request  json.RawMessage `json:"request"`
		Expected []struct {
			Decision bool `json:"decision"`
		} `json:"expected"`
	} `json:"evaluations"`
}

// authzenAnswer is an AuthZEN answer: one decision, or a batch's.
type authzenAnswer struct {
	Decision *bool `json:"decision"`
	Context  *struct {
		DecisionID string   `json:"decision_id"`
		Reasons    []string `json:"reasons"`
		Revision   string   `json:"revision"`
	} `json:"context"`
	Evaluations []authzenAnswer `json:"evaluations"`
}

// startTodoPDP starts verdict on a copy of policies/examples/authzen-todo
// (entrypoint todo) with the given authzen block.
func startTodoPDP(t *testing.T, authzenYAML string) *process {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "policies", "examples", "authzen-todo")
	files, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range files {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		authztest.WriteFile(t, filepath.Join(dir, "todo", e.Name()), string(b))
	}
	cfg := filepath.Join(dir, "verdict.yaml")
	authztest.WriteFile(t, cfg, "addr: 127.0.0.1:0\ndecision_log: off\npolicy:\n  dir: todo\n  entrypoint: todo\n"+authzenYAML)
	return startVerdict(t, startOptions{Args: []string{"--config", cfg}})
}

// postAuthZEN posts body to an AuthZEN endpoint with a request ID.
func (p *process) postAuthZEN(t *testing.T, path string, body []byte, requestID string) response {
	t.Helper()
	return do(t, p.Client, http.MethodPost, p.Base+path, bytes.NewReader(body),
		map[string]string{"Content-Type": "application/json", "X-Request-ID": requestID})
}

// TestAuthZENTodoInterop runs every request of the WG's Todo interop table
// for the 1.0 text (40 evaluations, 3 batches) against the real binary
// serving the example Todo policy, and expects the published decisions.
func TestAuthZENTodoInterop(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", "authzen", "decisions-authorization-api-1_0-02.json"))
	if err != nil {
		t.Fatal(err)
	}
	var table todoDecisions
	if err := json.Unmarshal(raw, &table); err != nil {
		t.Fatal(err)
	}
	if len(table.Evaluation) != 40 || len(table.Evaluations) != 3 {
		t.Fatalf("table has %d evaluations and %d batches, want 40 and 3", len(table.Evaluation), len(table.Evaluations))
	}
	p := startTodoPDP(t, "authzen:\n  trusted_peers: [127.0.0.1, \"::1\"]\n")

	passed, total := 0, len(table.Evaluation)+len(table.Evaluations)
	for i, c := range table.Evaluation {
		id := "todo-" + strconv.Itoa(i)
		r := p.postAuthZEN(t, "/access/v1/evaluation", c.Request, id)
		var a authzenAnswer
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil || a.Decision == nil || a.Context == nil {
			t.Errorf("evaluation %d: %d %s\nrequest %s", i, r.Status, r.Body, c.Request)
			continue
		}
		if got := r.Header.Get("X-Request-ID"); got != id {
			t.Errorf("evaluation %d: X-Request-ID = %q, want %q", i, got, id)
		}
		if *a.Decision != c.Expected {
			t.Errorf("evaluation %d: decision %v, want %v (reasons %q)\nrequest %s", i, *a.Decision, c.Expected, a.Context.Reasons, c.Request)
			continue
		}
		passed++
	}
	for i, c := range table.Evaluations {
		r := p.postAuthZEN(t, "/access/v1/evaluations", c.Request, "todo-batch-"+strconv.Itoa(i))
		var a authzenAnswer
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil || a.Decision != nil {
			t.Errorf("batch %d: %d %s\nrequest %s", i, r.Status, r.Body, c.Request)
			continue
		}
		ok := len(a.Evaluations) == len(c.Expected)
		for j := 0; ok && j < len(c.Expected); j++ {
			ok = a.Evaluations[j].Decision != nil && *a.Evaluations[j].Decision == c.Expected[j].Decision
		}
		if !ok {
			t.Errorf("batch %d: answer %s, want decisions %+v\nrequest %s", i, r.Body, c.Expected, c.Request)
			continue
		}
		passed++
	}
	t.Logf("AuthZEN Todo interop (decisions-authorization-api-1_0-02): %d/%d passed", passed, total)

	// The same batches, short-circuited: the answer stops at the deciding
	// item. Batch 1 (Morty's view of Rick's and his own todo) is [false,
	// true].
	var batch map[string]any
	if err := json.Unmarshal(table.Evaluations[1].Request, &batch); err != nil {
		t.Fatal(err)
	}
	for semantic, want := range map[string][]bool{
		"execute_all":            {false, true},
		"deny_on_first_deny":     {false},
		"permit_on_first_permit": {false, true},
	} {
		batch["options"] = map[string]any{"evaluations_semantic": semantic}
		body, _ := json.Marshal(batch)
		r := p.postAuthZEN(t, "/access/v1/evaluations", body, semantic)
		var a authzenAnswer
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &a) != nil || len(a.Evaluations) != len(want) {
			t.Errorf("%s: %d %s, want %d decisions", semantic, r.Status, r.Body, len(want))
			continue
		}
		for j, w := range want {
			if *a.Evaluations[j].Decision != w {
				t.Errorf("%s: item %d = %v, want %v", semantic, j, *a.Evaluations[j].Decision, w)
			}
		}
	}

	// The metadata names this PDP's endpoints, from the Host it was asked
	// with (no authzen.base_url).
	r := do(t, p.Client, http.MethodGet, p.Base+"/.well-known/authzen-configuration", nil, nil)
	var md map[string]string
	if r.Status != http.StatusOK || json.Unmarshal(r.Body, &md) != nil {
		t.Fatalf("metadata: %d %s", r.Status, r.Body)
	}
	if md["policy_decision_point"] != p.Base || md["access_evaluation_endpoint"] != p.Base+"/access/v1/evaluation" ||
		md["access_evaluations_endpoint"] != p.Base+"/access/v1/evaluations" {
		t.Errorf("metadata = %v, want URLs under %s", md, p.Base)
	}
}

// TestAuthZENUntrustedClient: a client outside authzen.trusted_peers gets
// 403 on the evaluation endpoints (and may still read the metadata).
func TestAuthZENUntrustedClient(t *testing.T) {
	t.Parallel()
	p := startTodoPDP(t, "authzen:\n  trusted_peers: [192.0.2.0/24]\n  base_url: https://pdp.example.com\n")
	body := []byte(`{"subject":{"type":"user","id":"CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"},` +
		`"action":{"name":"can_read_todos"},"resource":{"type":"todo","id":"todo-1"}}`)
	for _, path := range []string{"/access/v1/evaluation", "/access/v1/evaluations"} {
		r := p.postAuthZEN(t, path, body, "untrusted")
		a := r.JSON(t)
		if r.Status != http.StatusForbidden || a.Error == nil || a.Error.Code != "forbidden" || a.Allow {
			t.Errorf("%s: %d %s, want 403 forbidden", path, r.Status, r.Body)
		}
		if r.Header.Get("X-Request-ID") != "untrusted" {
			t.Errorf("%s: X-Request-ID = %q, want it echoed", path, r.Header.Get("X-Request-ID"))
		}
	}
	r := do(t, p.Client, http.MethodGet, p.Base+"/.well-known/authzen-configuration", nil, nil)
	if r.Status != http.StatusOK || !bytes.Contains(r.Body, []byte(`"policy_decision_point":"https://pdp.example.com"`)) {
		t.Errorf("metadata: %d %s", r.Status, r.Body)
	}
}
