package decisionlog_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// flakyWriter fails its next fail writes (taking the first take bytes of
// each, as a disk filling up mid-write does), then takes every write.
type flakyWriter struct {
	mu   sync.Mutex
	fail int
	take int
	buf  bytes.Buffer
}

func (w *flakyWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.fail > 0 {
		w.fail--
		n := min(w.take, len(p))
		w.buf.Write(p[:n])
		return n, syscall.ENOSPC
	}
	return w.buf.Write(p)
}

func (w *flakyWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// record returns a record whose decision ID is id.
func record(id string) decisionlog.Record { return decisionlog.Record{DecisionID: id, Time: at} }

// TestWriteFailuresDoNotStopTheLog: a Write that fails (a full disk)
// loses the records it held, every one of them counted as write_failed and
// none as written, and the log goes on: the next Write that succeeds
// writes the records logged from then on. The failure is logged once at
// Error, its recovery once, and the records lost in between are in the
// rate-limited drop warning. Before, the bufio.Writer in front of the
// file kept its first error: every later record was dropped for the life
// of the process, each with an Error line of its own, and the records lost
// in the failed flush counted as written.
func TestWriteFailuresDoNotStopTheLog(t *testing.T) {
	w := &flakyWriter{fail: 3}
	var logs warnings
	l, err := decisionlog.New(decisionlog.Options{Writer: w, WarnInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Logged before Run: one Write holds all seven, and fails.
	for i := range 7 {
		l.Log(record(fmt.Sprint("lost-", i)))
	}
	stop := authztest.Start(t, l.Run)
	eventually(t, 5*time.Second, "the first write did not fail", func() bool { return l.DroppedFor(decisionlog.DropWriteFailed) == 7 })
	for i := range 2 {
		l.Log(record(fmt.Sprint("lost-", 7+i)))
		eventually(t, 5*time.Second, "the next write did not fail", func() bool { return l.DroppedFor(decisionlog.DropWriteFailed) == uint64(8+i) })
	}
	const n = 50
	for i := range n {
		l.Log(record(fmt.Sprint("kept-", i)))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := w.String()
	if got := strings.Count(out, "\n"); got != n || strings.Contains(out, "lost-") {
		t.Errorf("the file holds %d lines, want the %d logged after the failures:\n%s", got, n, out)
	}
	if l.Written() != n || l.DroppedFor(decisionlog.DropWriteFailed) != 9 {
		t.Errorf("written %d, write_failed %d; want %d and 9", l.Written(), l.DroppedFor(decisionlog.DropWriteFailed), n)
	}
	got := logs.all()
	for _, want := range []struct {
		line  string
		count int
	}{
		{`level=ERROR msg="decision log write failed" error="no space left on device" records_lost=7`, 1},
		{"decision log write failed", 1},
		{`level=INFO msg="decision log recovered" write_failed=9`, 1},
		{`level=WARN msg="decision log dropped records" dropped=9 dropped_total=9 buffer=4096 write_failed=9`, 1},
	} {
		if c := strings.Count(got, want.line); c != want.count {
			t.Errorf("%q logged %d times, want %d:\n%s", want.line, c, want.count, got)
		}
	}
}

// TestFailedWriteEndsItsLine: a Write that fails inside a record (a disk
// filling up mid-line) leaves the records before it written and counted,
// and the next record starts a line of its own instead of finishing the
// broken one.
func TestFailedWriteEndsItsLine(t *testing.T) {
	first := decisionlog.AppendRecord(nil, new(record("whole")))
	w := &flakyWriter{fail: 1, take: len(first) + 1 + 10} // the first record, its '\n', and part of the second
	l, err := decisionlog.New(decisionlog.Options{Writer: w})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"whole", "broken", "lost"} {
		l.Log(record(id))
	}
	stop := authztest.Start(t, l.Run)
	eventually(t, 5*time.Second, "the write did not fail", func() bool { return l.DroppedFor(decisionlog.DropWriteFailed) == 2 })
	l.Log(record("after"))
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(w.String(), "\n")
	if len(lines) != 4 || lines[0] != string(first) || lines[3] != "" {
		t.Fatalf("the file holds %q, want the first record, a broken line, the last record", lines)
	}
	var rec struct {
		DecisionID string `json:"decision_id"`
	}
	if err := json.Unmarshal([]byte(lines[2]), &rec); err != nil || rec.DecisionID != "after" {
		t.Errorf("the record after the failure is %q (%v), want a line of its own", lines[2], err)
	}
	if l.Written() != 2 || l.DroppedFor(decisionlog.DropWriteFailed) != 2 {
		t.Errorf("written %d, write_failed %d; want 2 and 2", l.Written(), l.DroppedFor(decisionlog.DropWriteFailed))
	}
}
