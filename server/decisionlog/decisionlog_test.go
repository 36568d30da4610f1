package decisionlog_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

var update = flag.Bool("update", false, "rewrite golden files")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs (-want +got):\n-%s\n+%s", path, want, got)
	}
}

var at = time.Date(2026, 3, 14, 15, 9, 26, 535897000, time.FixedZone("CET", 3600))

func records() []decisionlog.Record {
	return []decisionlog.Record{
		{DecisionID: "N2XZ7Q4HCFRVK3PDSLGQAYBW5M", Time: at, Allow: true,
			Reasons: []string{"role viewer grants orders:read"}, Revision: "sha256:9c445fc392d8f9d7",
			SubjectID: "alice", Action: decisionlog.Action{Name: "orders:read"}, Latency: 73 * time.Microsecond},
		{DecisionID: "B7K2M4N6P8Q0R2S4T6V8X0Z2A4", Time: at, Allow: false,
			Reasons:  []string{"only payments may call inventory:reserve", "caller orders is not a known service"},
			Revision: "sha256:9c445fc392d8f9d7", CallerID: "spiffe://verdict.example/ns/shop/sa/orders",
			Action: decisionlog.Action{Method: "POST", Path: "/inventory/reserve"}, Latency: 1250 * time.Microsecond},
		{DecisionID: "C3D4E5F6G7H2I3J4K5L6M7N2O3", Time: at, Reasons: []string{"token: expired"},
			Action: decisionlog.Action{Name: "orders:read", Method: "GET", Path: "/orders/42"}},
		{DecisionID: "D4E5F6G7H2I3J4K5L6M7N2O3P4", Time: at, Reasons: []string{"not_ready: no policy loaded"},
			Action: decisionlog.Action{Name: "weird \"name\"\n\u2028\x01"}, Error: "not_ready"},
		{DecisionID: "E5F6G7H2I3J4K5L6M7N2O3P4Q5", Time: at, Allow: true, Reasons: []string{"role viewer grants orders:read"},
			Revision: "sha256:9c445fc392d8f9d7", SubjectID: "alice", Action: decisionlog.Action{Name: "orders:read"},
			Latency: 80 * time.Microsecond, Shadow: &decisionlog.Shadow{Revision: "candidate-7", Reasons: []string{"no role of alice grants orders:read"}}},
		{DecisionID: "F6G7H2I3J4K5L6M7N2O3P4Q5R6", Time: at, Allow: false, Reasons: []string{"no role of alice grants orders:delete"},
			Revision: "sha256:9c445fc392d8f9d7", SubjectID: "alice", Action: decisionlog.Action{Name: "orders:delete"},
			Shadow: &decisionlog.Shadow{Revision: "candidate-7", Reasons: []string{"policy_error: eval_conflict_error"}, Error: "policy_error"}},
		{DecisionID: "G7H2I3J4K5L6M7N2O3P4Q5R6S7", API: "ext_authz", TraceID: "4bf92f3577b34da6a3ce929d0e0e4736", Time: at,
			Allow: true, Reasons: []string{}, Revision: "sha256:9c445fc392d8f9d7", Action: decisionlog.Action{Method: "GET", Path: "/orders"},
			Latency: 60 * time.Microsecond},
	}
}

func TestRecordGolden(t *testing.T) {
	var b []byte
	for _, r := range records() {
		b = decisionlog.AppendRecord(b, &r)
		b = append(b, '\n')
	}
	golden(t, "records.jsonl", b)
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Errorf("not JSON: %v: %s", err, line)
		}
	}
}

func TestRunWritesAndFlushesOnShutdown(t *testing.T) {
	var out authztest.SyncBuffer
	l, err := decisionlog.New(decisionlog.Options{Writer: &out})
	if err != nil {
		t.Fatal(err)
	}
	// Records logged before Run starts wait in the buffer.
	for _, r := range records() {
		if !l.Log(r) {
			t.Fatal("Log refused a record with room in the buffer")
		}
	}
	if err := authztest.Start(t, l.Run)(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out.String(), "\n"); got != len(records()) {
		t.Fatalf("wrote %d lines, want %d:\n%s", got, len(records()), out.String())
	}
	if l.Written() != uint64(len(records())) || l.Dropped() != 0 {
		t.Errorf("written %d dropped %d", l.Written(), l.Dropped())
	}
}

// blocked is a writer that blocks until released.
type blocked struct{ release chan struct{} }

func (b *blocked) Write(p []byte) (int, error) { <-b.release; return len(p), nil }

// warnings collects warn-level log messages.
type warnings struct {
	mu  sync.Mutex
	msg []string
}

func (w *warnings) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msg = append(w.msg, string(p))
	return len(p), nil
}

func (w *warnings) all() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.msg, "")
}

func TestFullBufferDropsAndWarns(t *testing.T) {
	bw := &blocked{release: make(chan struct{})}
	var warn warnings
	l, err := decisionlog.New(decisionlog.Options{Writer: bw, Buffer: 4, WarnInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&warn, nil))})
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, l.Run)
	const n = 1000
	start := time.Now()
	for i := range n {
		r := records()[i%4]
		l.Log(r)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Log blocked: %d records took %v", n, el)
	}
	// The buffer holds 4; the writer takes what fits in its own 64 KiB
	// buffer before it blocks on the stuck Write.
	if l.Dropped() < n/2 {
		t.Errorf("dropped %d of %d with a blocked writer", l.Dropped(), n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(warn.all(), "decision log dropped records") {
		if time.Now().After(deadline) {
			t.Fatal("no drop warning")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(bw.release)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := l.Written() + l.Dropped(); got != n {
		t.Errorf("written %d + dropped %d = %d, want %d", l.Written(), l.Dropped(), got, n)
	}
}

func TestNewOptions(t *testing.T) {
	if _, err := decisionlog.New(decisionlog.Options{}); err == nil {
		t.Error("nil Writer accepted")
	}
	if _, err := decisionlog.New(decisionlog.Options{Writer: &bytes.Buffer{}, Buffer: -1}); err == nil {
		t.Error("negative buffer accepted")
	}
	for _, r := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := decisionlog.New(decisionlog.Options{Writer: &bytes.Buffer{}, MaxRecordsPerSecond: r}); !errors.Is(err, decisionlog.ErrOptions) {
			t.Errorf("MaxRecordsPerSecond %v: %v, want ErrOptions", r, err)
		}
	}
}

// TestRateLimited: with MaxRecordsPerSecond, a burst of records past one
// second's worth is dropped (rate_limited), counted in Stats and never
// written; a record a while later is taken again.
func TestRateLimited(t *testing.T) {
	var out authztest.SyncBuffer
	l, err := decisionlog.New(decisionlog.Options{Writer: &out, MaxRecordsPerSecond: 20})
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, l.Run)
	const n = 1000
	taken := 0
	for i := range n {
		if l.Log(records()[i%4]) {
			taken++
		}
	}
	// A burst of 20, and what refilled while the loop ran (1 a 50 ms).
	if taken < 20 || taken > 25 {
		t.Errorf("%d of a burst of %d taken, want about 20", taken, n)
	}
	if got := l.Stats().Dropped[decisionlog.DropRateLimited]; got != uint64(n-taken) {
		t.Errorf("rate_limited %d, want %d", got, n-taken)
	}
	time.Sleep(100 * time.Millisecond)
	if !l.Log(records()[0]) {
		t.Error("a record after the burst was refused")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(out.String(), "\n"); lines != taken+1 || l.Written() != uint64(taken+1) {
		t.Errorf("%d lines, %d written; want %d", lines, l.Written(), taken+1)
	}
	// A rate past what an int holds (meant as "no bound") takes records.
	huge, err := decisionlog.New(decisionlog.Options{Writer: &out, MaxRecordsPerSecond: 1e19})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if !huge.Log(records()[0]) {
			t.Fatal("a rate of 1e19 a second refused a record")
		}
	}
	unlimited, err := decisionlog.New(decisionlog.Options{Writer: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, has := unlimited.Stats().Dropped[decisionlog.DropRateLimited]; has {
		t.Error("a Logger without a rate reports rate_limited")
	}
}

func BenchmarkLog(b *testing.B) {
	l, _ := decisionlog.New(decisionlog.Options{Writer: &bytes.Buffer{}, Buffer: 1 << 20})
	r := records()[0]
	b.ReportAllocs()
	for b.Loop() {
		l.Log(r)
	}
}

func BenchmarkAppendRecord(b *testing.B) {
	r := records()[1]
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		buf = decisionlog.AppendRecord(buf[:0], &r)
	}
}
