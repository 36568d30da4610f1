package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// recordViewerRead records one allowed decision (a viewer reading an
// order) as recordDecisions does, and returns the log, its content and the
// decisions.
func recordViewerRead(t *testing.T) (log string, raw []byte, ds []authz.Decision) {
	t.Helper()
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	viewer, _ := m.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	log, ds = recordDecisions(t, m, []authz.Request{{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:read"}}})
	if raw, err = os.ReadFile(log); err != nil {
		t.Fatal(err)
	}
	return log, raw, ds
}

// recordDecisions decides reqs with the default policies, keeping inputs,
// and writes them as a decision log, as verdict serve does; it returns the
// log's path and the decisions.
func recordDecisions(t testing.TB, m *devtoken.Minter, reqs []authz.Request) (string, []authz.Decision) {
	t.Helper()
	e, err := authz.New(authz.Options{Tokens: m.TokenOptions(), KeepInput: true})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := bundles.ReadDir("../../policies", bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	var b []byte
	var ds []authz.Decision
	for _, req := range reqs {
		d, err := e.Decide(context.Background(), req)
		rec := decisionlog.Record{DecisionID: d.ID, Time: time.Now(), Allow: d.Allow, Reasons: d.Reasons, Input: d.Input}
		if err != nil && !strings.HasPrefix(d.Reasons[0], "token:") {
			t.Fatalf("decide: %v", err)
		}
		b = append(decisionlog.AppendRecord(b, &rec), '\n')
		ds = append(ds, d)
	}
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	authztest.WriteFile(t, path, string(b))
	return path, ds
}

// candidatePolicies is a copy of the default policies to change, with its
// data.json as changeData makes it (nil: as it is).
func candidatePolicies(t *testing.T, changeData func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	copyDir(t, "../../policies/authz", filepath.Join(dir, "authz"))
	data, err := os.ReadFile("../../policies/data.json")
	if err != nil {
		t.Fatal(err)
	}
	if changeData != nil {
		data = []byte(changeData(string(data)))
	}
	authztest.WriteFile(t, filepath.Join(dir, "data.json"), string(data))
	return dir
}

// TestReplay: a recorded log replayed against a changed policy reports
// exactly the decisions that flip (and exits 1); against the same policy
// nothing flips (exit 0).
func TestReplay(t *testing.T) {
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	viewer, _ := m.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	log, ds := recordDecisions(t, m, []authz.Request{
		{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:read"}},       // allow
		{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:delete"}},     // deny
		{Action: authz.Action{Name: "catalog:read"}},                                // allow, anonymous
		{Token: token.Raw(viewer + "x"), Action: authz.Action{Name: "orders:read"}}, // refused: no input
	})

	// The candidate: viewers may delete orders but no longer read them.
	candidate := candidatePolicies(t, func(data string) string {
		return strings.Replace(data, `"viewer": ["orders:read", "catalog:read"]`, `"viewer": ["orders:delete", "catalog:read"]`, 1)
	})

	code, out, stderr := verdict(t, "replay", "--log", log, "--policies", candidate, "--json")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (flips)\n%s\n%s", code, out, stderr)
	}
	var r replayReport
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Total != 4 || r.Skipped != 1 || r.Same != 1 || r.AllowToDeny != 1 || r.DenyToAllow != 1 || r.Errors != 0 || len(r.Flips) != 2 {
		t.Fatalf("report %+v", r)
	}
	byID := map[string]flip{}
	for _, f := range r.Flips {
		byID[f.DecisionID] = f
	}
	if f := byID[ds[0].ID]; f.Was.Allow != true || f.Now.Allow != false || f.Now.Reasons[0] != "no role grants orders:read" {
		t.Errorf("orders:read flip %+v", f)
	}
	if f := byID[ds[1].ID]; f.Was.Allow != false || f.Now.Allow != true {
		t.Errorf("orders:delete flip %+v", f)
	}

	// The same candidate as a bundle file, with --bundle.
	files := map[string]string{"/.manifest": `{"revision": "candidate-1"}`}
	for _, name := range []string{"data.json", "authz/action.rego", "authz/authz.rego", "authz/rbac.rego", "authz/services.rego"} {
		b, err := os.ReadFile(filepath.Join(candidate, name))
		if err != nil {
			t.Fatal(err)
		}
		files["/"+name] = string(b)
	}
	bundle := filepath.Join(t.TempDir(), "candidate.tar.gz")
	writeBundle(t, bundle, files)
	code, out, stderr = verdict(t, "replay", "--log", log, "--bundle", bundle)
	if code != 1 || !strings.Contains(out, "against revision candidate-1") || !strings.Contains(out, "1 allow→deny, 1 deny→allow") {
		t.Fatalf("--bundle: exit %d\n%s\n%s", code, out, stderr)
	}
	if code, _, _ := verdict(t, "replay", "--log", log, "--bundle", bundle, "--policies", candidate); code != 2 {
		t.Errorf("--bundle with --policies: exit %d, want 2", code)
	}
	if code, _, _ := verdict(t, "replay", "--log", log, "--bundle", candidate); code != 2 {
		t.Errorf("--bundle DIR: exit %d, want 2", code)
	}

	code, out, _ = verdict(t, "replay", "--log", log, "--policies", "../../policies")
	if code != 0 || !strings.Contains(out, "3 same") {
		t.Fatalf("same policy: exit %d\n%s", code, out)
	}
	// The log was recorded with the compiled evaluator; topdown agrees.
	code, out, _ = verdict(t, "replay", "--log", log, "--policies", "../../policies", "--evaluator", "topdown")
	if code != 0 || !strings.Contains(out, "3 same (0 with other reasons)") {
		t.Fatalf("--evaluator topdown: exit %d\n%s", code, out)
	}
	if code, _, stderr := verdict(t, "replay", "--log", log, "--policies", "../../policies", "--evaluator", "wasm"); code != 2 || !strings.Contains(stderr, `unknown evaluator "wasm"`) {
		t.Errorf("--evaluator wasm: exit %d, want 2\n%s", code, stderr)
	}
	if code, _, _ := verdict(t, "replay", "--policies", "../../policies"); code != 2 {
		t.Errorf("no --log: exit %d, want 2", code)
	}
}

// copyDir copies the regular files of src into dst.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		authztest.WriteFile(t, filepath.Join(dst, e.Name()), string(b))
	}
}

// BenchmarkReplay measures replay's rate: recorded decisions re-evaluated
// per second on one core.
func BenchmarkReplay(b *testing.B) {
	m, _ := devtoken.Generate()
	var reqs []authz.Request
	for i := range 200 {
		tok, _ := m.Mint("user", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
		action := []string{"orders:read", "orders:delete", "catalog:read", "inventory:reserve"}[i%4]
		reqs = append(reqs, authz.Request{Token: token.Raw(tok), Action: authz.Action{Name: action}})
	}
	log, _ := recordDecisions(b, m, reqs)
	b.ResetTimer()
	for b.Loop() {
		if code, out, _ := verdict(b, "replay", "--log", log, "--policies", "../../policies"); code != 0 {
			b.Fatal(out)
		}
	}
	b.ReportMetric(float64(len(reqs))*float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
}

// TestReplayReportPrintable: a decision log is read from outside; a
// decision ID or an error in it with control characters is printed
// escaped, so that it cannot forge the report's lines on a terminal.
func TestReplayReportPrintable(t *testing.T) {
	r := replayReport{Total: 2, Flips: []flip{
		{DecisionID: "x\x1b[2K\r\nreplayed 9 decisions against revision FAKE", Error: "boom\x1b[8m"},
		{DecisionID: "y\nforged: allow=true"},
		// A candidate policy's reasons, which a pull request writes.
		{DecisionID: "z", Now: outcome{Reasons: []string{"##[set-output name=a;]b"}}},
	}, Reasons: []flip{{DecisionID: "r", Was: outcome{Reasons: []string{"x ##vso[task.setvariable]y"}}}}}
	var b strings.Builder
	r.print(&b)
	if out := b.String(); strings.ContainsAny(out, "\x1b\r") || strings.Count(out, "\n") != 6 || strings.Contains(out, "\nreplayed 9") ||
		strings.Contains(out, "##[") || strings.Contains(out, "##vso[") {
		t.Errorf("report:\n%s", out)
	}
}

// TestReplayLiveErrors: a recorded decision that failed in its policy (a
// deny, with its input) is replayed: a candidate allowing it is a
// deny→allow flip (exit 1), one failing as well the same answer. Such
// records were skipped as if they had no input, and a candidate turning
// failed requests into allows passed.
func TestReplayLiveErrors(t *testing.T) {
	log, raw, ds := recordViewerRead(t)
	// As the live policy failed on it: a deny with an error, its input kept.
	failed := strings.Replace(strings.Replace(string(raw), `"allow":true`, `"allow":false,"error":"policy_error"`, 1), `"reasons":["role viewer grants orders:read"]`, `"reasons":["policy_error: conflict"]`, 1)
	if failed == string(raw) {
		t.Fatalf("record not rewritten: %s", raw)
	}
	authztest.WriteFile(t, log, failed)
	code, out, stderr := verdict(t, "replay", "--log", log, "--policies", "../../policies", "--json")
	var r replayReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.DenyToAllow != 1 || r.Skipped != 0 || len(r.Flips) != 1 || r.Flips[0].DecisionID != ds[0].ID {
		t.Fatalf("exit %d, report %+v (%v)\n%s", code, r, err, stderr)
	}
	// A candidate that fails on it too answers the same.
	candidate := candidatePolicies(t, nil)
	authztest.WriteFile(t, filepath.Join(candidate, "authz", "conflict.rego"), "package authz\n\nheaders := {\"x-conflict\": \"1\"} if input.action.name == \"orders:read\"\n")
	code, out, stderr = verdict(t, "replay", "--log", log, "--policies", candidate, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Same != 1 || r.Errors != 0 {
		t.Fatalf("failing candidate: exit %d, report %+v (%v)\n%s", code, r, err, stderr)
	}
}

// TestReplayNamesReasonsChanged: decisions whose answer stayed and whose
// reasons changed are listed, in the text and the JSON report; they were
// only counted, and an author could not tell which.
func TestReplayNamesReasonsChanged(t *testing.T) {
	m, err := devtoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	viewer, _ := m.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	log, ds := recordDecisions(t, m, []authz.Request{
		{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:delete"}}, // deny
		{Token: token.Raw(viewer), Action: authz.Action{Name: "orders:read"}},   // allow
	})
	candidate := candidatePolicies(t, nil)
	policy, err := os.ReadFile(filepath.Join(candidate, "authz", "authz.rego"))
	if err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, filepath.Join(candidate, "authz", "authz.rego"), strings.Replace(string(policy), `"no role grants %s"`, `"no role of yours grants %s"`, 1))
	code, out, stderr := verdict(t, "replay", "--log", log, "--policies", candidate, "--json")
	var r replayReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.ReasonsChanged != 1 || len(r.Reasons) != 1 || r.Reasons[0].DecisionID != ds[0].ID {
		t.Fatalf("exit %d, report %+v (%v)\n%s", code, r, err, stderr)
	}
	if _, out, _ := verdict(t, "replay", "--log", log, "--policies", candidate); !strings.Contains(out, ds[0].ID+": allow=false") {
		t.Errorf("the text report does not name %s:\n%s", ds[0].ID, out)
	}
}

// TestReplaySkipsInterrupted: a recorded decision cut short (its
// evaluation timed out or its client went away, or the heap limit stopped
// it) is no answer of the policy's: skipped, not a deny→allow flip
// against the very same policy.
func TestReplaySkipsInterrupted(t *testing.T) {
	log, raw, _ := recordViewerRead(t)
	failed := strings.Replace(string(raw), `"allow":true`, `"allow":false,"error":"policy_error"`, 1)
	cut := strings.Replace(failed, `"reasons":["role viewer grants orders:read"]`, `"reasons":["policy_error: `+authz.InterruptedDetail+`"]`, 1)
	// A policy error whose text a client chose to end the same way is a
	// policy error all the same: replayed.
	lookalike := strings.Replace(strings.Replace(failed, `"reasons":["role viewer grants orders:read"]`,
		`"reasons":["policy_error: p.rego:3: eval_builtin_error: net.cidr_contains: invalid CIDR address: x `+authz.InterruptedDetail+`"]`, 1),
		`"decision_id":"`, `"decision_id":"L`, 1)
	// One stopped by the heap limit: no answer of the policy's either.
	heap := strings.Replace(strings.Replace(failed, `"reasons":["role viewer grants orders:read"]`, `"reasons":["policy_error: `+authz.HeapLimitDetail+`"]`, 1),
		`"decision_id":"`, `"decision_id":"H`, 1)
	authztest.WriteFile(t, log, cut+heap+lookalike)
	code, out, stderr := verdict(t, "replay", "--log", log, "--policies", "../../policies", "--json")
	var r replayReport
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 || r.Skipped != 2 || r.DenyToAllow != 1 {
		t.Fatalf("exit %d, report %+v (%v); want the cut-short and heap-stopped records skipped, the look-alike flipped\n%s", code, r, err, stderr)
	}
}

// TestMultiLineErrors: an error of several lines (OPA's conflicting
// values, one line per value) is printed with its line breaks, the lines
// after the first indented, by decide on stderr and replay in its report;
// they showed a literal \n. The JSON outputs stay valid JSON, with the
// message whole.
func TestMultiLineErrors(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow := true if input.action.name\nallow := false if input.action.name == \"x\"\n")
	log := filepath.Join(dir, "decisions.jsonl")
	authztest.WriteFile(t, log, `{"decision_id":"d1","time":"2026-01-01T00:00:00Z","allow":true,"reasons":["ok"],"input":{"action":{"name":"x"}}}`+"\n")
	conflict := "produced conflicting values:\n    true at " + policy + ":3\n    false at " + policy + ":4"
	const wantMessage = "conflicting values:\n  true at "

	code, out, stderr := verdict(t, "decide", "--policies", policy, "--action", "x")
	if code != 2 || !strings.Contains(stderr, conflict) || strings.Contains(stderr, `\n`) {
		t.Errorf("decide: exit %d, stderr %q; want 2 with %q", code, stderr, conflict)
	}
	var d struct{ Reasons []string }
	if err := json.Unmarshal([]byte(out), &d); err != nil || len(d.Reasons) != 1 || !strings.Contains(d.Reasons[0], wantMessage) {
		t.Errorf("decide's decision %q (%v); want JSON whose reason has %q", out, err, wantMessage)
	}

	code, out, _ = verdict(t, "replay", "--log", log, "--policies", policy)
	if want := "  d1: error (was allow=true [\"ok\"]): policy evaluation failed: " + policy + ":4: eval_conflict_error: rule data.authz.allow produced conflicting values:\n" +
		"      true at " + policy + ":3\n      false at " + policy + ":4\n"; code != 1 || !strings.HasSuffix(out, want) {
		t.Errorf("replay: exit %d, report %q; want 1 ending %q", code, out, want)
	}
	code, out, _ = verdict(t, "replay", "--log", log, "--policies", policy, "--json")
	var report replayReport
	if err := json.Unmarshal([]byte(out), &report); err != nil || code != 1 || len(report.Flips) != 1 || !strings.Contains(report.Flips[0].Error, wantMessage) {
		t.Errorf("replay --json: exit %d, %q (%v); want 1 and JSON whose error has %q", code, out, err, wantMessage)
	}
}

// TestReplayCountsTruncated: a record written without its input because it
// was too large ("input_truncated": true) is counted as truncated, not
// skipped, and fails the gate (exit 1) unless --allow-truncated is given: a
// client able to make its records large kept them out of every replay.
func TestReplayCountsTruncated(t *testing.T) {
	log, raw, _ := recordViewerRead(t)
	var rec map[string]any
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatal(err)
	}
	delete(rec, "input")
	rec["input_truncated"], rec["allow"], rec["decision_id"] = true, false, "T"
	truncated, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, log, string(raw)+string(truncated)+"\n")
	for _, tc := range []struct {
		name     string
		flags    []string
		wantCode int
	}{
		{name: "refused", wantCode: 1},
		{name: "allowed", flags: []string{"--allow-truncated"}, wantCode: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := verdict(t, append([]string{"replay", "--log", log, "--policies", "../../policies", "--json"}, tc.flags...)...)
			var r replayReport
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != tc.wantCode || r.Truncated != 1 || r.Skipped != 0 || r.Same != 1 {
				t.Fatalf("exit %d, report %+v (%v); want exit %d, one truncated and one the same\n%s", code, r, err, tc.wantCode, stderr)
			}
			if tc.wantCode == 1 && !strings.Contains(stderr, "--allow-truncated") {
				t.Errorf("stderr %q does not say why", stderr)
			}
		})
	}
	code, out, _ := verdict(t, "replay", "--log", log, "--policies", "../../policies")
	if code != 1 || !strings.Contains(out, "1 truncated") {
		t.Errorf("text report: exit %d, %q; want 1 and the truncated record counted", code, out)
	}
	authztest.WriteFile(t, log, string(truncated)+"\n")
	if code, _, stderr := verdict(t, "replay", "--log", log, "--policies", "../../policies", "--allow-truncated"); code != 2 || !strings.Contains(stderr, "nothing was replayed") {
		t.Errorf("only a truncated record, allowed: exit %d, %q; want 2, nothing replayed", code, stderr)
	}
}

// TestReplayListsBoundedFlips: a log is read from outside, and a report
// kept every decision that flipped, reasons and all: a log of many flips,
// or of flips with reasons of megabytes, held as much memory as it was
// large. The report lists at most maxListed decisions and maxListedBytes
// of them, and counts the rest (the counts and the exit status exact).
func TestReplayListsBoundedFlips(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow := true\n")
	record := func(id, reason string) string {
		b, _ := json.Marshal(map[string]any{"decision_id": id, "time": "2026-01-01T00:00:00Z", "allow": false,
			"reasons": []string{reason}, "input": map[string]any{"action": map[string]any{"name": "x"}}})
		return string(b) + "\n"
	}
	for _, tc := range []struct {
		name       string
		n          int
		reason     string
		wantListed func(int) bool
	}{
		{name: "many", n: maxListed + 50, reason: "no", wantListed: func(n int) bool { return n == maxListed }},
		{name: "large", n: 24, reason: strings.Repeat("r", 1<<20), wantListed: func(n int) bool { return n > 0 && n <= maxListedBytes>>20 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			for i := range tc.n {
				b.WriteString(record(strconv.Itoa(i), tc.reason))
			}
			log := filepath.Join(t.TempDir(), "decisions.jsonl")
			authztest.WriteFile(t, log, b.String())
			code, out, stderr := verdict(t, "replay", "--log", log, "--policies", policy, "--json")
			var r replayReport
			if err := json.Unmarshal([]byte(out), &r); err != nil || code != 1 {
				t.Fatalf("exit %d (%v)\n%s", code, err, stderr)
			}
			if r.DenyToAllow != tc.n || !tc.wantListed(len(r.Flips)) || len(r.Flips)+r.FlipsNotListed != tc.n {
				t.Fatalf("%d deny→allow, %d listed, %d not listed; want %d counted, the listed bounded", r.DenyToAllow, len(r.Flips), r.FlipsNotListed, tc.n)
			}
			if _, out, _ := verdict(t, "replay", "--log", log, "--policies", policy); !strings.Contains(out, "and "+strconv.Itoa(r.FlipsNotListed)+" more flips, not listed") {
				t.Errorf("the text report does not count the flips not listed:\n%.500s", out)
			}
		})
	}
}

// TestReplayReadsTheLargestRecord: a record of exactly
// decisionlog.LargestRecordBytes, which a decision log with
// max_record_bytes at its largest writes with its input (only a larger one
// loses it), is replayed; the scanner counted its line end against the
// bound and refused the whole log ("token too long"), so a client sizing
// one request could stop every replay of the log.
func TestReplayReadsTheLargestRecord(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "p.rego")
	authztest.WriteFile(t, policy, "package authz\n\nallow := true\n")
	rec := func(pad int) []byte {
		in, err := ast.InterfaceToValue(map[string]any{"action": map[string]any{"name": "x"}, "resource": map[string]any{"pad": strings.Repeat("p", pad)}})
		if err != nil {
			t.Fatal(err)
		}
		r := decisionlog.Record{DecisionID: "big", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Allow: true, Input: in}
		return decisionlog.AppendRecord(nil, &r)
	}
	b := rec(decisionlog.LargestRecordBytes - len(rec(0)))
	if len(b) != decisionlog.LargestRecordBytes {
		t.Fatalf("record of %d bytes, want %d", len(b), decisionlog.LargestRecordBytes)
	}
	for _, end := range []string{"\n", "\r\n"} {
		log := filepath.Join(t.TempDir(), "decisions.jsonl")
		authztest.WriteFile(t, log, string(b)+end+string(b)+end)
		code, out, stderr := verdict(t, "replay", "--log", log, "--policies", policy, "--json")
		var r replayReport
		if err := json.Unmarshal([]byte(out), &r); err != nil || code != 0 || r.Same != 2 {
			t.Errorf("line end %q: exit %d, report %+v (%v); want both records replayed, the same\n%.300s", end, code, r, err, stderr)
		}
	}
}
