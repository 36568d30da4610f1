package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestLogFileReopensAtLineEnds: a reopen that comes inside a line (after
// a write that stopped inside a record)
// takes effect at the line's end: every line is whole in one file. Before,
// a record's head ended the rotated file and its tail began the new one.
func TestLogFileReopensAtLineEnds(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.jsonl")
	l, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		t.Helper()
		if n, err := l.Write([]byte(s)); err != nil || n != len(s) {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	write("{\"a\":1}\n{\"b\":")
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	write("2}\n{\"c\":")
	write("3}\n")
	// A reopen between lines takes effect at once.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	write("{\"d\":4}\n")
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{rotated: "{\"a\":1}\n{\"b\":2}\n", path + ".2": "{\"c\":3}\n", path: "{\"d\":4}\n"} {
		got, err := os.ReadFile(file)
		if err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v), want %q", filepath.Base(file), got, err, want)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 3 {
		t.Errorf("files %v, want three", entries)
	}
}

// breakFile closes the file l writes to, as a failed disk would leave it:
// every write to it fails.
func breakFile(t *testing.T, l *logFile) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLogFileReopenReplacesABrokenFile: a reopen inside a line whose file
// refuses writes takes effect at the next write, which fails (the line's
// end cannot be written), instead of waiting forever for a line's end to
// reach the broken file.
func TestLogFileReopenReplacesABrokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	l, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := l.Write([]byte("{\"a\":1}\n{\"b\":")); err != nil {
		t.Fatal(err)
	}
	breakFile(t, l)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write([]byte("2}\n{\"c\":3}\n")); err == nil {
		t.Fatal("a write to the broken file succeeded")
	}
	if n, err := l.Write([]byte("{\"d\":4}\n")); err != nil || n != 8 {
		t.Fatalf("the write after the reopen: %d, %v", n, err)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != "{\"d\":4}\n" {
		t.Errorf("the reopened file holds %q (%v), want the last line", got, err)
	}
}

// TestDecisionLogRecoversOnReopen: once its file refuses writes, the
// decision log drops records (write_failed) until SIGHUP's reopen gives it
// a file that takes them: the records logged from then on are written.
// Before, the first failed write stopped the log for the life of the
// process, reopen or not.
func TestDecisionLogRecoversOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	lf, err := openLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	dl, err := decisionlog.New(decisionlog.Options{Writer: lf})
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, dl.Run)
	breakFile(t, lf)
	dl.Log(decisionlog.Record{DecisionID: "lost", Time: time.Now()})
	for deadline := time.Now().Add(5 * time.Second); dl.DroppedFor(decisionlog.DropWriteFailed) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the write to the broken file did not fail")
		}
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	dl.Log(decisionlog.Record{DecisionID: "kept", Time: time.Now()})
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !strings.HasPrefix(string(got), `{"decision_id":"kept"`) || strings.Count(string(got), "\n") != 1 {
		t.Errorf("the reopened file holds %q (%v), want the record logged after the reopen", got, err)
	}
	if dl.Written() != 1 || dl.DroppedFor(decisionlog.DropWriteFailed) != 1 {
		t.Errorf("written %d, write_failed %d; want 1 and 1", dl.Written(), dl.DroppedFor(decisionlog.DropWriteFailed))
	}
}
