package filewatch_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// holder is what a Set applies to: it refuses contents starting "bad", and
// empty ones (a file written in place is empty for a moment, and a real
// parser refuses that too), and remembers what it took.
type holder struct {
	mu       sync.Mutex
	applied  [][]string
	refusals int
}

func (h *holder) apply(contents [][]byte) error {
	var got []string
	for _, c := range contents {
		if len(c) == 0 || bytes.HasPrefix(c, []byte("bad")) {
			h.mu.Lock()
			h.refusals++
			h.mu.Unlock()
			return fmt.Errorf("refused %q", c)
		}
		got = append(got, string(c))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applied = append(h.applied, got)
	return nil
}

func (h *holder) last() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.applied[len(h.applied)-1]
}

func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.applied)
}

// eventually waits up to 10 s for cond.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// write replaces path whole (a rename), as most tools write: a reader
// never sees it half-written.
func write(t *testing.T, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".write-tmp")
	writeInPlace(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writeInPlace truncates path and writes data into it: a reader may see it
// empty for a moment.
func writeInPlace(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// run starts w and stops it when the test ends.
func run(t *testing.T, w *filewatch.Watcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
}

func quick(opts filewatch.Options) filewatch.Options {
	opts.Debounce, opts.Retry = 10*time.Millisecond, 20*time.Millisecond
	if opts.Recheck == 0 {
		opts.Recheck = -1
	}
	return opts
}

func TestAddReadsAndApplies(t *testing.T) {
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	write(t, cert, "cert 1")
	write(t, key, "key 1")
	var h holder
	w := filewatch.New(quick(filewatch.Options{}))
	if err := w.Add(filewatch.Set{Name: "tls", Paths: []string{cert, key}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	if got := h.last(); got[0] != "cert 1" || got[1] != "key 1" {
		t.Fatalf("applied %q", got)
	}
	write(t, key, "bad key")
	err := w.Add(filewatch.Set{Name: "other", Paths: []string{key}, Apply: h.apply})
	if err == nil || !strings.HasPrefix(err.Error(), "other: ") || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("refused contents: %v", err)
	}
	err = w.Add(filewatch.Set{Name: "missing", Paths: []string{filepath.Join(dir, "nope")}, Apply: h.apply})
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing: ") {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big")
	write(t, big, strings.Repeat("x", 2000))
	w = filewatch.New(quick(filewatch.Options{MaxBytes: 1000}))
	if err := w.Add(filewatch.Set{Name: "big", Paths: []string{big}, Apply: h.apply}); err == nil || !strings.Contains(err.Error(), "more than 1000 bytes") {
		t.Fatalf("large file: %v", err)
	}
	if len(w.Status()) != 0 {
		t.Fatal("a set that failed is held")
	}
}

// TestRunTakesUpEveryKindOfReplacement: a file written in place, renamed
// over, deleted and made again, and swapped as a Kubernetes volume swaps
// its ..data link, is each time applied once; contents that Apply refuses
// (or a FIFO in the file's place) are counted and logged once however
// often they are retried; the contents in service before, put back, are
// applied again (a refusal may have changed what serves: keys revoked);
// rewriting the same bytes applies nothing.
func TestRunTakesUpEveryKindOfReplacement(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "jwks.json")
	write(t, path, "v1")
	var h holder
	var logs authztest.SyncBuffer
	w := filewatch.New(quick(filewatch.Options{What: "credentials", Logger: slog.New(slog.NewTextHandler(&logs, nil))}))
	if err := w.Add(filewatch.Set{Name: "tokens.issuers[0].jwks_file", Paths: []string{path}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	applied := func(n int, want string) {
		t.Helper()
		eventually(t, fmt.Sprintf("apply %d (%s)", n, want), func() bool { return h.count() >= n })
		if got := h.last()[0]; got != want || h.count() != n {
			t.Fatalf("applied %d times, last %q; want %d, %q", h.count(), got, n, want)
		}
	}
	status := func() filewatch.Status { return w.Status()[0] }

	writeInPlace(t, path, "v2")
	applied(2, "v2")

	tmp := filepath.Join(dir, ".jwks.json.tmp") // an editor's save by rename
	write(t, tmp, "v3")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	applied(3, "v3")

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the missing file reported", func() bool { return status().LastError != "" })
	write(t, path, "v4")
	applied(4, "v4")

	write(t, path, "bad v5")
	eventually(t, "the refusal reported", func() bool { return strings.Contains(status().LastError, "refused") })
	time.Sleep(100 * time.Millisecond) // several retries
	if st := status(); st.ReloadErrors != 2 || h.count() != 4 {
		t.Fatalf("after retries: %d distinct errors (want the missing file and the refusal), %d applies", st.ReloadErrors, h.count())
	}
	if n := strings.Count(logs.String(), "refused"); n != 1 {
		t.Fatalf("the refusal logged %d times:\n%s", n, logs.String())
	}
	write(t, path, "v4") // back to what served
	applied(5, "v4")
	if st := status(); st.LastError != "" {
		t.Fatalf("error not cleared: %+v", st)
	}
	write(t, path, "v4") // the same bytes again
	time.Sleep(100 * time.Millisecond)
	if h.count() != 5 {
		t.Fatalf("unchanged contents applied again: %d", h.count())
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the FIFO refused", func() bool { return strings.Contains(status().LastError, "not a regular file") })
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	write(t, path, "v5")
	applied(6, "v5")

	if st := status(); st.Reloads != 5 || st.ReloadErrors != 3 || st.LastError != "" || st.LoadedAt.IsZero() {
		t.Fatalf("status %+v", st)
	}
	for _, msg := range []string{`msg="credentials reloaded" name=tokens.issuers[0].jwks_file`, `msg="credentials reload failed" name=tokens.issuers[0].jwks_file`} {
		if !strings.Contains(logs.String(), msg) {
			t.Errorf("no log line %s:\n%s", msg, logs.String())
		}
	}
}

// TestRunFollowsKubernetesVolumeSwap: a ConfigMap or Secret volume holds
// each key as a link through ..data to a timestamped directory; the
// kubelet writes a new directory and swaps ..data. The new contents are
// applied.
func TestRunFollowsKubernetesVolumeSwap(t *testing.T) {
	dir := t.TempDir()
	version := func(name, data string) {
		if err := os.Mkdir(filepath.Join(dir, name), 0o700); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(dir, name, "ca.crt"), data)
	}
	version("..2026_01_01_00_00_00.1", "ca 1")
	if err := os.Symlink("..2026_01_01_00_00_00.1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("..data/ca.crt", filepath.Join(dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	var h holder
	w := filewatch.New(quick(filewatch.Options{}))
	if err := w.Add(filewatch.Set{Name: "callers.trust_bundle_file", Paths: []string{filepath.Join(dir, "ca.crt")}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	version("..2026_01_02_00_00_00.2", "ca 2")
	if err := os.Symlink("..2026_01_02_00_00_00.2", filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the swapped contents", func() bool { return h.count() == 2 })
	if got := h.last()[0]; got != "ca 2" {
		t.Fatalf("applied %q", got)
	}
}

// TestRunFollowsLinkTargets: a file reached through a link into another
// directory, written there (in place or renamed over), is taken up at
// once: the directory the link leads to is watched too, and follows the
// link when it is re-pointed.
func TestRunFollowsLinkTargets(t *testing.T) {
	watched, elsewhere, other := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, filepath.Join(elsewhere, "key.pem"), "k1")
	link := filepath.Join(watched, "key.pem")
	if err := os.Symlink(filepath.Join(elsewhere, "key.pem"), link); err != nil {
		t.Fatal(err)
	}
	var h holder
	w := filewatch.New(quick(filewatch.Options{})) // no recheck: events only
	if err := w.Add(filewatch.Set{Name: "key", Paths: []string{link}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	writeInPlace(t, filepath.Join(elsewhere, "key.pem"), "k2")
	eventually(t, "k2, written in place where the link leads", func() bool { return h.count() >= 2 && h.last()[0] == "k2" })
	write(t, filepath.Join(elsewhere, "key.pem"), "k3")
	eventually(t, "k3, renamed over where the link leads", func() bool { return h.last()[0] == "k3" })

	// Re-pointed to a third directory, which is watched from then on.
	write(t, filepath.Join(other, "key.pem"), "k4")
	tmp := filepath.Join(watched, ".key.pem.tmp")
	if err := os.Symlink(filepath.Join(other, "key.pem"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
	eventually(t, "k4, the link re-pointed", func() bool { return h.last()[0] == "k4" })
	write(t, filepath.Join(other, "key.pem"), "k5")
	eventually(t, "k5, written where the link now leads", func() bool { return h.last()[0] == "k5" })
}

// TestRecheckSeesWhatNoEventSays: a link in the middle of a chain
// re-pointed in a directory that is not watched (neither the path's nor
// the final file's) makes no event; the periodic recheck takes it up.
func TestRecheckSeesWhatNoEventSays(t *testing.T) {
	watched, hop, elsewhere := t.TempDir(), t.TempDir(), t.TempDir()
	write(t, filepath.Join(elsewhere, "a.pem"), "k1")
	write(t, filepath.Join(elsewhere, "b.pem"), "k2")
	middle := filepath.Join(hop, "key.pem")
	if err := os.Symlink(filepath.Join(elsewhere, "a.pem"), middle); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(watched, "key.pem")
	if err := os.Symlink(middle, link); err != nil {
		t.Fatal(err)
	}
	var h holder
	w := filewatch.New(quick(filewatch.Options{Recheck: 50 * time.Millisecond}))
	if err := w.Add(filewatch.Set{Name: "key", Paths: []string{link}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	tmp := filepath.Join(hop, ".tmp")
	if err := os.Symlink(filepath.Join(elsewhere, "b.pem"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, middle); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the recheck", func() bool { return h.count() == 2 && h.last()[0] == "k2" })
}

// TestMomentaryFailureNotReported: contents refused once and fixed before
// the retry (a certificate written before its key) are not reported.
func TestMomentaryFailureNotReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tls.crt")
	write(t, path, "v1")
	var h holder
	var logs authztest.SyncBuffer
	opts := quick(filewatch.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	opts.Retry = time.Hour
	w := filewatch.New(opts)
	if err := w.Add(filewatch.Set{Name: "tls", Paths: []string{path}, Apply: h.apply}); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	write(t, path, "bad: the key is not written yet")
	eventually(t, "the refusal", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.refusals > 0
	})
	write(t, path, "v2")
	eventually(t, "v2", func() bool { return h.last()[0] == "v2" })
	if st := w.Status()[0]; st.ReloadErrors != 0 || st.LastError != "" || strings.Contains(logs.String(), "failed") {
		t.Fatalf("a momentary failure was reported: %+v\n%s", st, logs.String())
	}
}

// TestChangingFailureReported: a failure whose message changes on every
// attempt is still reported, on the retry after the first.
func TestChangingFailureReported(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key.pem")
	write(t, path, "v1")
	n := 0
	w := filewatch.New(quick(filewatch.Options{}))
	err := w.Add(filewatch.Set{Name: "key", Paths: []string{path}, Apply: func(c [][]byte) error {
		if string(c[0]) == "v1" {
			return nil
		}
		n++
		return fmt.Errorf("attempt %d", n)
	}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, w)
	write(t, path, "v2")
	eventually(t, "the failure reported", func() bool { return w.Status()[0].LastError != "" })
}
