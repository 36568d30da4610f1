package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestLogFileReopensAtLineEnds: a reopen that comes inside a line (the
// log's writer hands a record over in two writes when its buffer fills)
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
