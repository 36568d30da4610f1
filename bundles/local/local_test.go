package local_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/local"
)

const (
	debounce = 30 * time.Millisecond
	wait     = 5 * time.Second
	quiet    = 300 * time.Millisecond // no further snapshot within this
	retry    = 10 * time.Millisecond  // RetryInterval where a test counts retries
)

// start runs src in the background (see bundletest.Run) and returns once
// its first load attempt finished.
func start(t *testing.T, src interface {
	bundles.Source
	Initialized() <-chan struct{}
}, sink bundles.Sink) {
	t.Helper()
	done := bundletest.Run(t, src, sink)
	select {
	case <-src.Initialized():
	case <-done:
		t.Fatal("Run returned before its first load attempt")
	case <-time.After(wait):
		t.Fatal("not initialized")
	}
}

// startDir writes rego as authz.rego in a new directory and starts a Dir
// on it (newDir) feeding a new sink that buffers n snapshots. It returns
// the policy file's path.
func startDir(t *testing.T, rego string, n int) (string, *local.Dir, *bundletest.Sink) {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "authz.rego")
	write(t, p, rego)
	sink := bundletest.NewSink(n)
	d := newDir(t, dir)
	start(t, d, sink)
	return p, d, sink
}

func newDir(t *testing.T, dir string) *local.Dir {
	t.Helper()
	d, err := local.NewDir(local.DirOptions{Dir: dir, Debounce: debounce, RetryInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func write(t *testing.T, path, content string) { bundletest.WriteFile(t, path, []byte(content)) }

func rename(t *testing.T, from, to string) { bundletest.Must(t, os.Rename(from, to)) }

// TestDirEditorPatterns proves that each way editors and platforms save a
// file yields exactly one new snapshot with the new content.
func TestDirEditorPatterns(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) // initial layout; authz.rego at v1
		save  func(t *testing.T, dir string) // the change
		check func(t *testing.T, s *bundles.Snapshot)
	}{
		{
			name: "write in place",
			save: func(t *testing.T, dir string) {
				f, err := os.OpenFile(filepath.Join(dir, "authz.rego"), os.O_WRONLY|os.O_TRUNC, 0)
				bundletest.Must(t, err)
				_, err = f.WriteString(bundletest.Policy("authz", 2))
				bundletest.Must(t, err)
				bundletest.Must(t, f.Close())
			},
		},
		{
			name: "vim: swap file, backup rename, write new",
			save: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "authz.rego")
				write(t, filepath.Join(dir, ".authz.rego.swp"), "swap")
				write(t, filepath.Join(dir, "4913"), "")
				bundletest.Must(t, os.Remove(filepath.Join(dir, "4913")))
				rename(t, p, p+"~")
				write(t, p, bundletest.Policy("authz", 2))
				bundletest.Must(t, os.Remove(p+"~"))
				bundletest.Must(t, os.Remove(filepath.Join(dir, ".authz.rego.swp")))
			},
		},
		{
			name: "jetbrains: safe write via ___jb_tmp___ and ___jb_old___",
			save: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "authz.rego")
				write(t, p+"___jb_tmp___", bundletest.Policy("authz", 2))
				rename(t, p, p+"___jb_old___")
				rename(t, p+"___jb_tmp___", p)
				bundletest.Must(t, os.Remove(p+"___jb_old___"))
			},
		},
		{
			name: "vs code: atomic write, temp file renamed over",
			save: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "authz.rego")
				write(t, filepath.Join(dir, ".authz.rego.tmp"), bundletest.Policy("authz", 2))
				rename(t, filepath.Join(dir, ".authz.rego.tmp"), p)
			},
		},
		{
			name: "delete and recreate",
			save: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "authz.rego")
				bundletest.Must(t, os.Remove(p))
				write(t, p, bundletest.Policy("authz", 2))
			},
		},
		{
			name: "new subdirectory with a module and data",
			save: func(t *testing.T, dir string) {
				sub := filepath.Join(dir, "teams", "orders")
				bundletest.Must(t, os.MkdirAll(sub, 0o755))
				write(t, filepath.Join(sub, "orders.rego"), bundletest.Policy("teams.orders", 1))
				write(t, filepath.Join(sub, "data.yaml"), "owners: [alice]\n")
			},
			check: func(t *testing.T, s *bundles.Snapshot) {
				if got := strings.Join(bundletest.ModulePaths(s), ","); got != "authz.rego,teams/orders/orders.rego" {
					t.Errorf("modules = %s", got)
				}
				teams, _ := s.Data["teams"].(map[string]any)
				orders, _ := teams["orders"].(map[string]any)
				if orders["owners"] == nil {
					t.Errorf("data = %v, want teams.orders.owners", s.Data)
				}
			},
		},
		{
			name: "file saved in an existing subdirectory",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "lib", "lib.rego"), bundletest.Policy("lib", 1))
			},
			save: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "lib", "lib.rego"), bundletest.Policy("lib", 2))
			},
			check: func(t *testing.T, s *bundles.Snapshot) {
				if got := bundletest.ModuleSource(s, "lib/lib.rego"); got != bundletest.Policy("lib", 2) {
					t.Errorf("lib/lib.rego = %q", got)
				}
			},
		},
		{
			name: "removed subdirectory",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "lib", "deep", "lib.rego"), bundletest.Policy("lib", 1))
			},
			save: func(t *testing.T, dir string) {
				bundletest.Must(t, os.RemoveAll(filepath.Join(dir, "lib")))
			},
			check: func(t *testing.T, s *bundles.Snapshot) {
				if got := strings.Join(bundletest.ModulePaths(s), ","); got != "authz.rego" {
					t.Errorf("modules = %s, want authz.rego only", got)
				}
			},
		},
		{
			name: "data.json written in place",
			setup: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "roles", "data.json"), `{"admin": ["alice"]}`)
			},
			save: func(t *testing.T, dir string) {
				write(t, filepath.Join(dir, "roles", "data.json"), `{"admin": ["bob"]}`)
			},
			check: func(t *testing.T, s *bundles.Snapshot) {
				if got := fmt.Sprint(s.Data["roles"]); got != "map[admin:[bob]]" {
					t.Errorf("data.roles = %s", got)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, filepath.Join(dir, "authz.rego"), bundletest.Policy("authz", 1))
			if tc.setup != nil {
				tc.setup(t, dir)
			}
			sink := bundletest.NewSink(16)
			start(t, newDir(t, dir), sink)
			first := sink.Next(t, wait)

			tc.save(t, dir)
			got := sink.Next(t, wait)
			sink.None(t, quiet)
			if got.Revision == first.Revision {
				t.Fatalf("revision unchanged: %s", got.Revision)
			}
			if tc.check != nil {
				tc.check(t, got)
			} else if src := bundletest.ModuleSource(got, "authz.rego"); src != bundletest.Policy("authz", 2) {
				t.Fatalf("authz.rego = %q, want v2", src)
			}
		})
	}
}

// configMap mimics the kubelet's atomic writer: the visible files are
// symlinks into ..data, which links to a timestamped directory; an update
// writes a new timestamped directory, points ..data_tmp at it, renames
// ..data_tmp over ..data, and removes the old directory.
type configMap struct {
	dir string
	n   int
}

func (c *configMap) update(t *testing.T, files map[string]string) {
	t.Helper()
	c.n++
	ts := fmt.Sprintf("..2024_01_01_00_00_%02d.%09d", c.n, c.n)
	for name, content := range files {
		write(t, filepath.Join(c.dir, ts, name), content)
	}
	old, _ := os.Readlink(filepath.Join(c.dir, "..data"))
	bundletest.Must(t, os.Symlink(ts, filepath.Join(c.dir, "..data_tmp")))
	rename(t, filepath.Join(c.dir, "..data_tmp"), filepath.Join(c.dir, "..data"))
	for name := range files {
		link := filepath.Join(c.dir, name)
		if _, err := os.Lstat(link); err != nil {
			bundletest.Must(t, os.Symlink(filepath.Join("..data", name), link))
		}
	}
	if old != "" {
		bundletest.Must(t, os.RemoveAll(filepath.Join(c.dir, old)))
	}
}

func TestDirConfigMapSwap(t *testing.T) {
	cm := &configMap{dir: t.TempDir()}
	cm.update(t, map[string]string{"authz.rego": bundletest.Policy("authz", 1), "data.json": `{"v": 1}`})
	sink := bundletest.NewSink(16)
	start(t, newDir(t, cm.dir), sink)
	if s := sink.Next(t, wait); bundletest.ModuleSource(s, "authz.rego") != bundletest.Policy("authz", 1) {
		t.Fatalf("initial snapshot = %v", bundletest.ModulePaths(s))
	}
	for v := 2; v <= 4; v++ {
		cm.update(t, map[string]string{"authz.rego": bundletest.Policy("authz", v), "data.json": fmt.Sprintf(`{"v": %d}`, v)})
		s := sink.Next(t, wait)
		sink.None(t, quiet)
		if got := bundletest.ModuleSource(s, "authz.rego"); got != bundletest.Policy("authz", v) {
			t.Fatalf("update %d: authz.rego = %q", v, got)
		}
		if got := fmt.Sprint(s.Data["v"]); got != fmt.Sprint(v) {
			t.Fatalf("update %d: data.v = %s", v, got)
		}
		if got := strings.Join(bundletest.ModulePaths(s), ","); got != "authz.rego" {
			t.Fatalf("update %d: modules = %s (hidden ..data read?)", v, got)
		}
	}
}

func TestDirBrokenSaveKeepsServing(t *testing.T) {
	tests := []struct {
		name, broken string
		wantLoc      string // file:line: prefix in the status error
	}{
		{name: "syntax error", broken: "package authz\n\nallow if {\n  input.n ==\n}\n", wantLoc: "authz.rego:"},
		{name: "conflicting rules", broken: "package authz\n\ndefault allow := false\ndefault allow := true\n", wantLoc: "authz.rego:1:1: rego_type_error: multiple default rules"},
		{name: "unsafe variable", broken: "package authz\n\nallow if y > 1\n", wantLoc: "authz.rego:3:10:"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, d, sink := startDir(t, bundletest.Policy("authz", 1), 16)
			good := sink.Next(t, wait)

			write(t, p, tc.broken)
			st := waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError != "" })
			if !strings.Contains(st.LastError, tc.wantLoc) {
				t.Errorf("LastError = %q, want it to contain %q", st.LastError, tc.wantLoc)
			}
			if len(st.Errors) == 0 || st.Errors[0].File != "authz.rego" || st.Errors[0].Line == 0 || st.Errors[0].Col == 0 {
				t.Errorf("Errors = %+v, want file, line and col", st.Errors)
			}
			if st.Revision != good.Revision || sink.Current() != good {
				t.Errorf("serving %s, status %s; want the last good %s", sink.Current().Revision, st.Revision, good.Revision)
			}
			if st.ReloadErrors != 1 {
				t.Errorf("ReloadErrors = %d, want 1", st.ReloadErrors)
			}

			write(t, p, bundletest.Policy("authz", 3))
			fixed := sink.Next(t, wait)
			// The sink accepts before the source records it: wait for that.
			st = waitStatus(t, d.Status, func(s bundles.Status) bool { return s.Revision == fixed.Revision })
			if st.LastError != "" || st.Reloads != 2 {
				t.Errorf("after fix: status = %+v", st)
			}
		})
	}
}

// TestDirBrokenSaveRetriedQuietly: a broken save is logged and counted
// once however often it is retried, and undoing it logs one recovery,
// clears the status and, when the sink had refused the broken save, gives
// the sink the good snapshot again so that its own error clears too.
func TestDirBrokenSaveRetriedQuietly(t *testing.T) {
	tests := []struct {
		name     string
		broken   string
		failLog  string // the one line the broken save logs
		retried  bool   // the read fails, so the source retries it
		sinkSees bool   // the broken save reaches the sink, which refuses it
	}{
		{name: "syntax error: the read fails and is retried", broken: "package authz\nallow if {",
			failLog: "policy reload failed", retried: true},
		{name: "compile error: the sink refuses it", broken: "package authz\n\ndefault allow := false\ndefault allow := true\n",
			failLog: "policy reload failed", sinkSees: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "authz.rego")
			write(t, p, bundletest.Policy("authz", 1))
			var logs bundletest.Logs
			d, err := local.NewDir(local.DirOptions{Dir: dir, Debounce: debounce, RetryInterval: retry, Logger: logs.Logger()})
			bundletest.Must(t, err)
			sink := bundletest.NewSink(16)
			start(t, d, sink)
			good := sink.Next(t, wait)

			write(t, p, tc.broken)
			st := waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError != "" })
			if tc.retried {
				// At least 20 retries, each failing the same way.
				st = waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastAttempt.Sub(s.LastErrorAt) >= 20*retry })
			} else {
				time.Sleep(quiet)
				st = d.Status()
			}
			if n := logs.Count(tc.failLog); n != 1 || st.ReloadErrors != 1 {
				t.Errorf("%q lines, ReloadErrors = %d, %d; want 1, 1 (logs %q)", tc.failLog, n, st.ReloadErrors, logs.Messages())
			}
			calls := sink.Calls()

			// Undone: back to what the sink serves, in one step (a retry
			// 10 ms apart could read a file written in two, truncated
			// first, and fail on it anew).
			tmp := filepath.Join(t.TempDir(), "authz.rego")
			write(t, tmp, bundletest.Policy("authz", 1))
			rename(t, tmp, p)
			st = waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError == "" })
			if tc.sinkSees {
				if s := sink.Next(t, wait); s.Revision != good.Revision {
					t.Errorf("sink given %s again, want the good %s", s.Revision, good.Revision)
				}
				if got := sink.Calls(); got != calls+1 {
					t.Errorf("sink calls after the revert = %d, want %d", got, calls+1)
				}
			}
			sink.None(t, quiet)
			st = d.Status()
			if n := logs.Count("policy recovered"); n != 1 {
				t.Errorf("recovered lines = %d, want 1 (logs %q)", n, logs.Messages())
			}
			if v, _ := logs.Attr("policy recovered", "revision"); v.String() != good.Revision {
				t.Errorf("recovered line names revision %q, want %s", v, good.Revision)
			}
			if st.LastError != "" || len(st.Errors) != 0 || st.Revision != good.Revision || st.ReloadErrors != 1 {
				t.Errorf("status after recovery = %+v", st)
			}
			if n := logs.Count(tc.failLog); n != 1 {
				t.Errorf("%q lines after recovery = %d, want still 1", tc.failLog, n)
			}
		})
	}
}

func TestDirInitialLoadFailsThenRecovers(t *testing.T) {
	p, d, sink := startDir(t, "package authz\nallow if {", 4)
	// Initialized is closed after the first attempt: it failed.
	if st := d.Status(); st.Revision != "" || st.LastError == "" {
		t.Fatalf("status = %+v, want an error and no revision", st)
	}
	if err := d.Status().Check(0, time.Now()); !errors.Is(err, bundles.ErrNotLoaded) {
		t.Fatalf("Check = %v, want ErrNotLoaded", err)
	}
	write(t, p, bundletest.Policy("authz", 1))
	sink.Next(t, wait)
}

// TestDirRevertToGood: a broken save that never reached the sink (it does
// not parse), undone back to the serving content, clears the error without
// reloading.
func TestDirRevertToGood(t *testing.T) {
	p, d, sink := startDir(t, bundletest.Policy("authz", 1), 4)
	sink.Next(t, wait)
	write(t, p, "package authz\nallow if {")
	waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError != "" })
	write(t, p, bundletest.Policy("authz", 1))
	waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError == "" })
	sink.None(t, quiet)
}

func TestDirRootRemovedAndRecreated(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "policies")
	write(t, filepath.Join(dir, "authz.rego"), bundletest.Policy("authz", 1))
	sink := bundletest.NewSink(4)
	d := newDir(t, dir)
	start(t, d, sink)
	sink.Next(t, wait)
	bundletest.Must(t, os.RemoveAll(dir))
	waitStatus(t, d.Status, func(s bundles.Status) bool { return s.LastError != "" })
	write(t, filepath.Join(dir, "authz.rego"), bundletest.Policy("authz", 2))
	if s := sink.Next(t, wait); bundletest.ModuleSource(s, "authz.rego") != bundletest.Policy("authz", 2) {
		t.Fatal("did not recover after the directory came back")
	}
}

// TestDirReplacedDirectoryStillWatched: a directory of the policy set
// removed and made again at once (rm -r lib; mkdir lib), and the root
// swapped by rename, are read, and so is every later edit inside them.
// fsnotify drops the watch of a removed directory; the new one has the same
// path, and edits in it went unseen.
func TestDirReplacedDirectoryStillWatched(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "policies")
	write(t, filepath.Join(dir, "authz.rego"), bundletest.Policy("authz", 1))
	lib := filepath.Join(dir, "lib")
	write(t, filepath.Join(lib, "lib.rego"), bundletest.Policy("lib", 1))
	sink := bundletest.NewSink(16)
	start(t, newDir(t, dir), sink)
	sink.Next(t, wait)
	next := func(file, want string) {
		t.Helper()
		for s := sink.Next(t, wait); bundletest.ModuleSource(s, file) != want; s = sink.Next(t, wait) {
		}
	}

	bundletest.Must(t, os.RemoveAll(lib))
	write(t, filepath.Join(lib, "lib.rego"), bundletest.Policy("lib", 2))
	next("lib/lib.rego", bundletest.Policy("lib", 2))
	time.Sleep(10 * debounce) // the edit below is an event of its own
	write(t, filepath.Join(lib, "lib.rego"), bundletest.Policy("lib", 3))
	next("lib/lib.rego", bundletest.Policy("lib", 3))

	// The root, swapped by rename.
	staged := filepath.Join(parent, "policies.new")
	write(t, filepath.Join(staged, "authz.rego"), bundletest.Policy("authz", 2))
	bundletest.Must(t, os.Rename(dir, filepath.Join(parent, "policies.old")))
	bundletest.Must(t, os.Rename(staged, dir))
	next("authz.rego", bundletest.Policy("authz", 2))
	time.Sleep(10 * debounce)
	write(t, filepath.Join(dir, "authz.rego"), bundletest.Policy("authz", 3))
	next("authz.rego", bundletest.Policy("authz", 3))
}

// TestDirManyReloadsRace delivers 100 reloads while readers keep reading
// the current snapshot; run it with -race.
func TestDirManyReloadsRace(t *testing.T) {
	p, d, sink := startDir(t, bundletest.Policy("authz", 0), 1)
	sink.Next(t, wait)

	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s := sink.Current()
				if s == nil || len(s.Modules) != 1 || s.Revision == "" {
					t.Error("reader saw an incomplete snapshot")
					return
				}
				_ = d.Status()
			}
		})
	}
	const n = 100
	for i := 1; i <= n; i++ {
		write(t, p, bundletest.Policy("authz", i))
		want := bundletest.Policy("authz", i)
		for s := sink.Next(t, wait); bundletest.ModuleSource(s, "authz.rego") != want; s = sink.Next(t, wait) {
		}
	}
	cancel()
	wg.Wait()
	if st := waitStatus(t, d.Status, func(s bundles.Status) bool { return s.Reloads >= n+1 }); st.Reloads != n+1 {
		t.Errorf("Reloads = %d, want %d", st.Reloads, n+1)
	}
}

func TestNewDirOptions(t *testing.T) {
	if _, err := local.NewDir(local.DirOptions{}); !errors.Is(err, local.ErrOptions) {
		t.Errorf("empty Dir: err = %v, want ErrOptions", err)
	}
	d, err := local.NewDir(local.DirOptions{Dir: filepath.Join(t.TempDir(), "missing")})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(t.Context(), bundletest.NewSink(1)); !errors.Is(err, local.ErrWatch) {
		t.Errorf("missing dir: Run = %v, want ErrWatch", err)
	}
	for _, l := range bundletest.NegativeLimits() {
		o := local.DirOptions{Dir: "p", Limits: l}
		if _, err := local.NewDir(o); !errors.Is(err, local.ErrOptions) {
			t.Errorf("NewDir(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

// TestDirLimits: the limits reach the directory reader; a policy set over
// one is refused and reported, and recovers once it fits.
func TestDirLimits(t *testing.T) {
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.rego"), bundletest.Policy("a", 1))
	write(t, filepath.Join(dir, "b.rego"), bundletest.Policy("b", 1))
	d, err := local.NewDir(local.DirOptions{Dir: dir, Debounce: debounce, Limits: bundles.Limits{MaxFiles: 1}})
	bundletest.Must(t, err)
	sink := bundletest.NewSink(2)
	start(t, d, sink)
	if st := d.Status(); !strings.Contains(st.LastError, "more than 1 files") || sink.Calls() != 0 {
		t.Fatalf("status = %+v, loads = %d", st, sink.Calls())
	}
	bundletest.Must(t, os.Remove(filepath.Join(dir, "b.rego")))
	if s := sink.Next(t, wait); len(s.Modules) != 1 {
		t.Fatalf("modules %v", bundletest.ModulePaths(s))
	}
}

func waitStatus(t *testing.T, get func() bundles.Status, ok func(bundles.Status) bool) bundles.Status {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		st := get()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never matched: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkDirSaveToEffect measures the time from a file save to the new
// snapshot being accepted by the sink, and reports the median and p99.
func BenchmarkDirSaveToEffect(b *testing.B) {
	dir := b.TempDir()
	p := filepath.Join(dir, "authz.rego")
	bundletest.WriteFile(b, p, []byte(bundletest.Policy("authz", 0)))
	sink := bundletest.NewSink(1)
	d, err := local.NewDir(local.DirOptions{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, sink) }()
	defer func() { cancel(); <-done }()
	sink.Next(b, wait)

	var lat []time.Duration
	b.ResetTimer()
	for i := 1; i <= b.N; i++ {
		t0 := time.Now()
		bundletest.WriteFile(b, p, []byte(bundletest.Policy("authz", i)))
		sink.Next(b, wait)
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[(len(lat)*99)/100].Microseconds())/1000, "ms-p99")
}

// TestDirSiblingLinksReadyFast: links between sibling levels (two at each
// level to the next, 2^14 paths to the last) neither hold back the first
// load nor stop hot reload: the watcher walks each directory once, as the
// read does.
func TestDirSiblingLinksReadyFast(t *testing.T) {
	const levels = 14
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	bundletest.Must(t, os.Mkdir(pol, 0o755))
	write(t, filepath.Join(pol, "authz.rego"), bundletest.Policy("authz", 1))
	for i := 0; i <= levels; i++ {
		bundletest.Must(t, os.Mkdir(filepath.Join(root, fmt.Sprintf("L%d", i)), 0o755))
	}
	bundletest.Must(t, os.Symlink(filepath.Join(root, "L0"), filepath.Join(pol, "lib")))
	for i := 0; i < levels; i++ {
		next := filepath.Join(root, fmt.Sprintf("L%d", i+1))
		bundletest.Must(t, os.Symlink(next, filepath.Join(root, fmt.Sprintf("L%d", i), "a")))
		bundletest.Must(t, os.Symlink(next, filepath.Join(root, fmt.Sprintf("L%d", i), "b")))
	}
	sink := bundletest.NewSink(2)
	start(t, newDir(t, pol), sink) // fails after wait (5 s); the old walk took 11 s
	if s := sink.Next(t, wait); len(s.Modules) != 1 {
		t.Fatalf("modules %v", bundletest.ModulePaths(s))
	}
	write(t, filepath.Join(root, fmt.Sprintf("L%d", levels), "deep.rego"), bundletest.Policy("deep", 1))
	if s := sink.Next(t, wait); len(s.Modules) != 2 {
		t.Fatalf("after a write at the last level: modules %v", bundletest.ModulePaths(s))
	}
}

// TestDirLinkToHugeTree: a link to a tree of more directories than
// max_files stops the watcher's walk there, with an error in the status
// that says so; removing the link recovers.
func TestDirLinkToHugeTree(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	bundletest.Must(t, os.Mkdir(pol, 0o755))
	write(t, filepath.Join(pol, "authz.rego"), bundletest.Policy("authz", 1))
	huge := filepath.Join(root, "huge")
	for i := range 50 {
		bundletest.Must(t, os.MkdirAll(filepath.Join(huge, fmt.Sprintf("d%d", i)), 0o755))
	}
	link := filepath.Join(pol, "lib")
	bundletest.Must(t, os.Symlink(huge, link))
	d, err := local.NewDir(local.DirOptions{Dir: pol, Debounce: debounce, Limits: bundles.Limits{MaxFiles: 10}})
	bundletest.Must(t, err)
	sink := bundletest.NewSink(2)
	start(t, d, sink)
	if st := d.Status(); !strings.Contains(st.LastError, "policy directory has more than 10 directories") || sink.Calls() != 0 {
		t.Fatalf("status = %+v, loads = %d", st, sink.Calls())
	}
	bundletest.Must(t, os.Remove(link))
	if s := sink.Next(t, wait); len(s.Modules) != 1 {
		t.Fatalf("modules %v", bundletest.ModulePaths(s))
	}
}

// TestDirWatchesWhatIsRead: a save in a directory the read lists reloads
// also where the watcher's own walk, a copy of the read's link rules, did
// not watch it: a directory reached through a link to the parent of one
// linked before, and one more than 64 levels down.
func TestDirWatchesWhatIsRead(t *testing.T) {
	root := t.TempDir()
	pol := filepath.Join(root, "policy")
	write(t, filepath.Join(pol, "authz.rego"), bundletest.Policy("authz", 1))
	bundletest.Must(t, os.MkdirAll(filepath.Join(root, "x", "y"), 0o755))
	bundletest.Must(t, os.Symlink(filepath.Join(root, "x", "y"), filepath.Join(pol, "n1")))
	bundletest.Must(t, os.Symlink(filepath.Join(root, "x"), filepath.Join(pol, "n2")))
	deep := filepath.Join(pol, "deep")
	for range 70 {
		deep = filepath.Join(deep, "d")
	}
	bundletest.Must(t, os.MkdirAll(deep, 0o755))
	sink := bundletest.NewSink(4)
	start(t, newDir(t, pol), sink)
	sink.Next(t, wait)

	for _, file := range []string{filepath.Join(root, "x", "x.rego"), filepath.Join(deep, "deep.rego")} {
		write(t, file, bundletest.Policy(strings.TrimSuffix(filepath.Base(file), ".rego"), 1))
		for s := sink.Next(t, wait); !slices.ContainsFunc(s.Modules, func(m bundles.Module) bool {
			return path.Base(m.Path) == filepath.Base(file)
		}); s = sink.Next(t, wait) {
		}
	}
}
