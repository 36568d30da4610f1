package test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestDecisionLogUpload ships the decision log of the real binary to an
// in-process collector (as Fluent Bit's http input or Vector's http_server
// would take it: gzip'd JSON arrays) while writing it to stdout too. The
// collector wants a bearer token from the environment (${NAME} in the
// configuration) and refuses the first batch with a 503, so a retry
// happens. Decisions are made before and just before SIGTERM; after a clean
// exit the collector holds every decision exactly once, byte for byte the
// records stdout got, and the token appears in no log.
func TestDecisionLogUpload(t *testing.T) {
	t.Parallel()
	const token = "e2e-c0llector-t0ken"
	var (
		mu       sync.Mutex
		requests int
		records  = map[string][]byte{} // decision_id → record, as uploaded
		dupes    []string
		problems []string
	)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		requests++
		switch {
		case err != nil:
			problems = append(problems, "reading a batch: "+err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		case r.Header.Get("Authorization") != "Bearer "+token:
			problems = append(problems, "a batch without the token")
			w.WriteHeader(http.StatusUnauthorized)
			return
		case requests == 1:
			w.WriteHeader(http.StatusServiceUnavailable) // retried
			return
		case r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Content-Type") != "application/json":
			problems = append(problems, "headers "+r.Header.Get("Content-Encoding")+" "+r.Header.Get("Content-Type"))
			w.WriteHeader(http.StatusUnsupportedMediaType)
			return
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			problems = append(problems, "not gzip: "+err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		plain, _ := io.ReadAll(zr)
		var batch []json.RawMessage
		if err := json.Unmarshal(plain, &batch); err != nil {
			problems = append(problems, "not a JSON array: "+err.Error())
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		for _, rec := range batch {
			var id struct {
				DecisionID string `json:"decision_id"`
			}
			_ = json.Unmarshal(rec, &id)
			if _, seen := records[id.DecisionID]; seen {
				dupes = append(dupes, id.DecisionID)
			}
			records[id.DecisionID] = rec
		}
		w.WriteHeader(http.StatusCreated) // as Fluent Bit answers
	}))
	t.Cleanup(collector.Close)

	f := newFixture(t)
	p := startVerdict(t, startOptions{
		Args: []string{"--config", f.writeConfig(t, configWithPolicies(`decision_log:
  output: stdout
  mask: [/input/subject/claims/email]
  upload:
    url: `+collector.URL+`/verdict
    interval: 1h
    max_batch_records: 5
    headers:
      Authorization: "Bearer ${VERDICT_E2E_COLLECTOR_TOKEN}"
`))},
		Env: []string{"VERDICT_E2E_COLLECTOR_TOKEN=" + token},
	})
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}, "email": "alice@example.com"})
	var ids []string
	ask := func(n int) {
		for i := range n {
			action := []string{"orders:read", "orders:delete", "catalog:read"}[i%3]
			ids = append(ids, p.decideOK(t, mustJSON(t, map[string]any{"token": viewer, "action": action})).ID)
		}
	}
	ask(12)
	// Full batches leave while serving; the rest waits (the interval is
	// far off) until the flush at SIGTERM.
	eventually(t, 10*time.Second, func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(records) != 10 {
			return "the two full batches not delivered while serving"
		}
		return ""
	})
	ask(7) // just before the shutdown: a full batch, and 4 with the 2 left for the flush
	sigterm := time.Now()
	p.Signal(t, syscall.SIGTERM)
	p.Wait(t)
	if el := time.Since(sigterm); el > 8*time.Second {
		t.Errorf("shutdown took %v", el)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 || len(dupes) > 0 {
		t.Errorf("collector problems %q, records delivered twice %q", problems, dupes)
	}
	var missing []string
	for _, id := range ids {
		if _, ok := records[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 || len(records) != len(ids) {
		t.Errorf("the collector holds %d records for %d decisions; missing %q", len(records), len(ids), missing)
	}
	// The same encoder for both outputs: each stdout line is the uploaded
	// record.
	lines := strings.Split(strings.TrimSpace(p.Stdout.String()), "\n")
	if len(lines) != len(ids) {
		t.Errorf("stdout has %d records, want %d", len(lines), len(ids))
	}
	for _, line := range lines {
		var id struct {
			DecisionID string `json:"decision_id"`
		}
		if err := json.Unmarshal([]byte(line), &id); err != nil {
			t.Errorf("stdout line %q: %v", line, err)
			continue
		}
		if got := records[id.DecisionID]; !bytes.Equal(got, []byte(line)) {
			t.Errorf("decision %s: uploaded %s\nstdout   %s", id.DecisionID, got, line)
		}
	}
	for _, rec := range records {
		if bytes.Contains(rec, []byte("alice@example.com")) || bytes.Contains(rec, []byte(viewer)) {
			t.Errorf("a masked claim or the raw token was uploaded: %s", rec)
			break
		}
	}
	if requests < 3 {
		t.Errorf("%d requests: want batches while serving, the refused one retried, and the flush", requests)
	}
	if strings.Contains(p.Stderr.String(), token) {
		t.Error("the collector token is in verdict's log")
	}
	if !slices.ContainsFunc(strings.Split(p.Stderr.String(), "\n"), func(l string) bool {
		return strings.Contains(l, "decision log upload failed") && strings.Contains(l, "503")
	}) {
		t.Errorf("the refused batch is not logged:\n%s", p.Stderr.String())
	}
}
