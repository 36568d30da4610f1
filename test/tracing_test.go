package test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/internal/otlptest"
)

// A sampled traceparent, as a proxy in front of Verdict would send it.
const (
	e2eTraceID     = "0af7651916cd43dd8448eb211c80319c"
	e2eParentSpan  = "b7ad6b7169203331"
	e2eTraceparent = "00-" + e2eTraceID + "-" + e2eParentSpan + "-01"
)

// holdSpans keeps finished spans in the exporter's batch for ten minutes,
// so that only a shutdown's flush can deliver them.
const holdSpans = "OTEL_BSP_SCHEDULE_DELAY=600000"

// tracedDecision asks one decision with the test's traceparent and
// returns its ID.
func tracedDecision(t *testing.T, p *process, tok string) string {
	t.Helper()
	r := do(t, p.Client, http.MethodPost, p.Base+"/v1/decide",
		strings.NewReader(mustJSON(t, map[string]any{"token": tok, "action": "orders:read"})),
		map[string]string{"Content-Type": "application/json", "Traceparent": e2eTraceparent})
	if r.Status != http.StatusOK {
		t.Fatalf("decide: %d %s", r.Status, r.Body)
	}
	return r.JSON(t).ID
}

// checkDecideTrace checks that the spans hold the decision's span in the
// caller's trace, with the engine's spans under it, from service.
func checkDecideTrace(t *testing.T, spans []otlptest.Span, decisionID, service string) {
	t.Helper()
	var decide *otlptest.Span
	for _, s := range otlptest.Named(spans, "verdict.decide") {
		if s.Attributes["verdict.decision_id"] == decisionID {
			decide = &s
		}
	}
	if decide == nil {
		t.Fatalf("no verdict.decide span for decision %s:\n%s", decisionID, otlptest.Describe(spans))
	}
	if decide.TraceID != e2eTraceID || decide.ParentSpanID != e2eParentSpan || decide.Service != service ||
		decide.Attributes["verdict.api"] != "decide" || decide.Attributes["verdict.allow"] != true {
		t.Errorf("decide span: want trace %s, parent %s, service %s, api decide, allow:\n%s",
			e2eTraceID, e2eParentSpan, service, otlptest.Describe([]otlptest.Span{*decide}))
	}
	names := map[string]bool{}
	for _, c := range otlptest.Children(spans, *decide) {
		names[c.Name] = true
	}
	if !names["verdict.verify_token"] || !names["verdict.evaluate"] {
		t.Errorf("decide span's children lack verify_token or evaluate:\n%s", otlptest.Describe(spans))
	}
}

// loggedTraceID returns the trace_id of the decision-log record of id.
func loggedTraceID(t *testing.T, p *process, id string) string {
	t.Helper()
	for _, line := range strings.Split(p.Stdout.String(), "\n") {
		var rec struct {
			DecisionID string `json:"decision_id"`
			TraceID    string `json:"trace_id"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.DecisionID == id {
			return rec.TraceID
		}
	}
	t.Fatalf("no decision-log record for %s:\n%s", id, p.Stdout.String())
	return ""
}

// TestTracingFromConfig: with a tracing block the binary exports its
// spans to the configured collector, the block winning over the OTEL_*
// environment (endpoint, service name); the spans batched when SIGTERM
// comes are flushed before the process exits; the decision log names the
// trace.
func TestTracingFromConfig(t *testing.T) {
	t.Parallel()
	rcv, ignored := otlptest.Start(t), otlptest.Start(t)
	f := newFixture(t)
	p := startVerdict(t, startOptions{
		Args: []string{"--config", f.writeConfig(t, configWithPolicies(
			"decision_log: stdout\ntracing:\n  endpoint: "+rcv.URL+"\n  service_name: verdict-e2e\n  sample_ratio: 0.5\n"))},
		Env: []string{holdSpans, "OTEL_EXPORTER_OTLP_ENDPOINT=" + ignored.URL, "OTEL_SERVICE_NAME=ignored"},
	})
	tok := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	id := tracedDecision(t, p, tok)
	if !strings.Contains(p.Stderr.String(), "msg=tracing endpoint="+rcv.URL+"/v1/traces") {
		t.Errorf("the log does not say where spans go:\n%s", p.Stderr.String())
	}

	if n := rcv.Requests(); n != 0 {
		t.Fatalf("%d exports before shutdown; OTEL_BSP_SCHEDULE_DELAY should hold them", n)
	}
	p.Stop(t)
	spans := rcv.Wait(t, time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 })
	checkDecideTrace(t, spans, id, "verdict-e2e")
	if got := loggedTraceID(t, p, id); got != e2eTraceID {
		t.Errorf("decision log trace_id = %q, want %q", got, e2eTraceID)
	}
	if n := ignored.Requests() + len(ignored.Rejected()); n != 0 {
		t.Errorf("the environment's endpoint got %d exports; the file's should win", n)
	}
}

// TestTracingFromEnvironment: without a tracing block, the standard
// OTEL_EXPORTER_OTLP_ENDPOINT turns tracing on, and the exporter's batches
// arrive while the process runs.
func TestTracingFromEnvironment(t *testing.T) {
	t.Parallel()
	rcv := otlptest.Start(t)
	f := newFixture(t)
	p := startVerdict(t, startOptions{
		Args: []string{"--config", f.writeConfig(t, configWithPolicies("decision_log: stdout\n"))},
		Env:  []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + rcv.URL, "OTEL_SERVICE_NAME=verdict-env", "OTEL_BSP_SCHEDULE_DELAY=50"},
	})
	tok := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	id := tracedDecision(t, p, tok)
	spans := rcv.Wait(t, 10*time.Second, func(s []otlptest.Span) bool { return len(s) >= 3 })
	checkDecideTrace(t, spans, id, "verdict-env")
	if got := loggedTraceID(t, p, id); got != e2eTraceID {
		t.Errorf("decision log trace_id = %q, want %q", got, e2eTraceID)
	}
}

// TestTracingOff: OTEL_SDK_DISABLED=true turns tracing off, block and
// endpoint notwithstanding, and without a block or an endpoint there is
// none: nothing is exported, even at shutdown, and no record names a
// trace.
func TestTracingOff(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, extra string
		env         func(url string) []string
	}{
		{name: "OTEL_SDK_DISABLED", extra: "tracing: {sample_ratio: 1}\n",
			env: func(url string) []string {
				return []string{"OTEL_SDK_DISABLED=true", "OTEL_EXPORTER_OTLP_ENDPOINT=" + url}
			}},
		{name: "not configured",
			env: func(string) []string { return nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rcv := otlptest.Start(t)
			f := newFixture(t)
			p := startVerdict(t, startOptions{
				Args: []string{"--config", f.writeConfig(t, configWithPolicies("decision_log: stdout\n"+tc.extra))},
				Env:  tc.env(rcv.URL),
			})
			tok := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
			id := tracedDecision(t, p, tok)
			p.Stop(t)
			if n := rcv.Requests() + len(rcv.Rejected()); n != 0 {
				t.Errorf("%d exports with tracing off", n)
			}
			if got := loggedTraceID(t, p, id); got != "" {
				t.Errorf("decision log trace_id = %q with tracing off", got)
			}
			if strings.Contains(p.Stderr.String(), "msg=tracing") {
				t.Errorf("the log says tracing is on:\n%s", p.Stderr.String())
			}
		})
	}
}
