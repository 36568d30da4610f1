package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// reloadDeadline bounds how long a saved policy may take to be served
// (DESIGN: "within a second"; the test allows slack for a loaded machine).
const reloadDeadline = 5 * time.Second

// policyVersion is a small policy whose reasons name its version; from
// version 2 on it allows orders:read.
func policyVersion(v int) string {
	allow := ""
	if v >= 2 {
		allow = "\nallow if input.action.name == \"orders:read\"\n"
	}
	return fmt.Sprintf("package authz\n\ndefault allow := false\n%s\nreasons := {\"policy v%d\"}\n", allow, v)
}

// TestHotReload edits the policy directory of a running process: a saved
// change (write to a temporary file, rename) flips the decision without a
// restart; a broken save (syntax error, then a type error) keeps the last
// good policy serving while /v1/status shows the error with file:line; the
// fixed save is served again. Decisions keep succeeding throughout.
func TestHotReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := filepath.Join(f.Dir, "reload")
	policy := filepath.Join(dir, "authz", "authz.rego")
	authztest.WriteFile(t, policy, policyVersion(1))
	p := f.start(t, `addr: 127.0.0.1:0
policy:
  dir: reload
decision_log: off
`+tokensYAML, nil)

	const readOrder = `{"action":"orders:read"}`
	decision := func() answer {
		t.Helper()
		return p.decideOK(t, readOrder)
	}
	waitFor := func(allow bool, reason string) answer {
		t.Helper()
		var a answer
		eventually(t, reloadDeadline, func() string {
			a = decision()
			if a.Allow != allow || len(a.Reasons) != 1 || a.Reasons[0] != reason {
				return fmt.Sprintf("decision allow=%v reasons=%q, want allow=%v [%q]", a.Allow, a.Reasons, allow, reason)
			}
			return ""
		})
		return a
	}

	// Decisions run throughout the reloads; every one must be a decision.
	var (
		wg       sync.WaitGroup
		stopLoad atomic.Bool
		served   atomic.Int64
		loadErr  atomic.Value
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for !stopLoad.Load() {
			resp, err := p.Client.Post(p.Base+"/v1/decide", "application/json", strings.NewReader(readOrder))
			if err != nil {
				loadErr.CompareAndSwap(nil, err.Error())
				return
			}
			var a answer
			err = json.NewDecoder(resp.Body).Decode(&a)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || err != nil || a.Error != nil || len(a.Reasons) != 1 {
				loadErr.CompareAndSwap(nil, fmt.Sprintf("during reloads: status %d, %+v, %v", resp.StatusCode, a, err))
				return
			}
			served.Add(1)
		}
	}()
	defer func() {
		stopLoad.Store(true)
		wg.Wait()
		if e := loadErr.Load(); e != nil {
			t.Errorf("decision failed: %v", e)
		}
		t.Logf("%d decisions during the reloads", served.Load())
	}()

	v1 := waitFor(false, "policy v1")

	// A changed policy, saved by write-and-rename, flips the decision.
	start := time.Now()
	writeAtomic(t, policy, policyVersion(2))
	v2 := waitFor(true, "policy v2")
	t.Logf("reload took effect after %v", time.Since(start).Round(time.Millisecond))
	if v2.Revision == v1.Revision {
		t.Errorf("revision %q did not change with the policy", v2.Revision)
	}
	before, _ := status(t, p)

	// Broken saves: a syntax error, then a typo in input (a type error).
	for _, tc := range []struct {
		name    string
		content string
		line    int
	}{
		{name: "syntax error", content: "package authz\n\ndefault allow := false\n\nallow if input.action.name == \"orders:read\")\n\nreasons := {\"broken\"}\n", line: 5},
		{name: "type error", content: "package authz\n\ndefault allow := false\n\nreasons := {\"typo\"}\n\nallow if input.subjet.id == \"alice\"\n", line: 7},
		// headers that can never be strings would answer 500 on every allow.
		{name: "contract type error", content: "package authz\n\ndefault allow := false\n\nallow if input.action.name == \"orders:read\"\n\nreasons := {\"typed\"}\n\nheaders := {\"x-n\": 1}\n", line: 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeAtomic(t, policy, tc.content)
			var doc statusDoc
			var raw string
			eventually(t, reloadDeadline, func() string {
				doc, raw = status(t, p)
				// load_failures counts every failed reload, a save that
				// does not parse (which never reaches the engine) too.
				if doc.LoadFailures <= before.LoadFailures {
					return "no reload error in /v1/status: " + raw
				}
				return ""
			})
			before = doc
			// The top-level last_error names the file and the line, whether
			// the save failed to parse (the engine never saw it) or to
			// compile: one place to look.
			want := fmt.Sprintf("authz.rego:%d", tc.line)
			found := false
			if doc.LastError != nil {
				for _, pr := range doc.LastError.Problems {
					found = found || strings.HasSuffix(pr.File, "authz.rego") && pr.Line == tc.line
				}
			}
			if !found {
				t.Errorf("/v1/status last_error does not name %s:\n%s", want, raw)
			}
			if !doc.Ready || doc.Revision != v2.Revision {
				t.Errorf("/v1/status ready=%v revision=%q, want the last good revision %q", doc.Ready, doc.Revision, v2.Revision)
			}
			// The last good policy keeps answering.
			if a := decision(); !a.Allow || a.Reasons[0] != "policy v2" || a.Revision != v2.Revision {
				t.Errorf("after a broken save: allow=%v reasons=%q revision=%q, want v2 still serving", a.Allow, a.Reasons, a.Revision)
			}
			if r := do(t, p.Client, http.MethodGet, p.Base+"/health/ready", nil, nil); r.Status != http.StatusOK {
				t.Errorf("/health/ready after a broken save: %d %s", r.Status, r.Body)
			}
			eventually(t, 2*time.Second, func() string {
				for _, line := range strings.Split(p.Stderr.String(), "\n") {
					if strings.Contains(line, want) && strings.Contains(line, "policy reload failed") {
						return ""
					}
				}
				return "no policy reload failed line names " + want
			})
		})
	}

	// The fixed save is served.
	writeAtomic(t, policy, policyVersion(3))
	v3 := waitFor(true, "policy v3")
	if v3.Revision == v2.Revision {
		t.Errorf("revision did not change after the fix")
	}
	eventually(t, reloadDeadline, func() string {
		if doc, raw := status(t, p); !doc.Ready || doc.Revision != v3.Revision || doc.LastError != nil {
			return "/v1/status after the fix: " + raw
		}
		return ""
	})

	// Whatever the editor does: write in place, delete and recreate, a new
	// subdirectory, a changed data file.
	t.Run("write in place", func(t *testing.T) {
		if err := os.WriteFile(policy, []byte(policyVersion(4)), 0o644); err != nil {
			t.Fatal(err)
		}
		waitFor(true, "policy v4")
	})
	t.Run("delete and recreate", func(t *testing.T) {
		if err := os.Remove(policy); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // let the watcher see the deletion alone
		authztest.WriteFile(t, policy, policyVersion(5))
		waitFor(true, "policy v5")
	})
	dataPolicy := "package authz\n\ndefault allow := false\n\nallow if input.action.name == data.sub.allowed\n\nreasons := {\"policy v6\"}\n"
	t.Run("policy reads data", func(t *testing.T) {
		writeAtomic(t, policy, dataPolicy)
		waitFor(false, "policy v6")
	})
	t.Run("new subdirectory with a data file", func(t *testing.T) {
		authztest.WriteFile(t, filepath.Join(dir, "sub", "data.json"), `{"allowed": "orders:read"}`)
		waitFor(true, "policy v6")
	})
	t.Run("changed data file", func(t *testing.T) {
		writeAtomic(t, filepath.Join(dir, "sub", "data.json"), `{"allowed": "orders:write"}`)
		waitFor(false, "policy v6")
	})
	t.Run("new nested subdirectory with a policy", func(t *testing.T) {
		writeAtomic(t, policy, "package authz\n\ndefault allow := false\n\nallow if data.authz.more.ok\n\nreasons := {\"policy v7\"}\n")
		waitFor(false, "policy v7")
		authztest.WriteFile(t, filepath.Join(dir, "deep", "er", "more.rego"), "package authz.more\n\nok if input.action.name == \"orders:read\"\n")
		waitFor(true, "policy v7")
	})
}

// TestRequireTestsOnReload: with policy.require_tests, a saved change whose
// own tests fail never replaces the serving policy; /v1/status names the
// failing test; fixing the test lets the change through.
func TestRequireTestsOnReload(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	dir := filepath.Join(f.Dir, "gated")
	policy := filepath.Join(dir, "authz", "authz.rego")
	tests := filepath.Join(dir, "authz", "authz_test.rego")
	authztest.WriteFile(t, policy, policyVersion(2))
	authztest.WriteFile(t, tests, "package authz_test\n\ntest_read if data.authz.allow with input as {\"action\": {\"name\": \"orders:read\"}}\n")
	p := f.start(t, "addr: 127.0.0.1:0\npolicy:\n  dir: gated\n  require_tests: true\ndecision_log: off\n"+tokensYAML, nil)
	eventually(t, reloadDeadline, func() string {
		if a := p.decide(t, `{"action":"orders:read"}`).JSON(t); !a.Allow || a.Reasons[0] != "policy v2" {
			return fmt.Sprintf("not serving v2: %+v", a)
		}
		return ""
	})
	before, _ := status(t, p)

	// v1 denies orders:read, which its test says must be allowed.
	writeAtomic(t, policy, policyVersion(1))
	eventually(t, reloadDeadline, func() string {
		doc, raw := status(t, p)
		if doc.LoadFailures <= before.LoadFailures {
			return "no load failure yet: " + raw
		}
		if !strings.Contains(raw, "authz_test.rego") || !strings.Contains(raw, "test_read failed") {
			return "/v1/status does not name the failing test: " + raw
		}
		return ""
	})
	if a := p.decide(t, `{"action":"orders:read"}`).JSON(t); !a.Allow || a.Reasons[0] != "policy v2" {
		t.Errorf("a change with a failing test replaced the policy: %+v", a)
	}

	// The test updated with the change: both go through.
	writeAtomic(t, tests, "package authz_test\n\ntest_read_denied if not data.authz.allow with input as {\"action\": {\"name\": \"orders:read\"}}\n")
	eventually(t, reloadDeadline, func() string {
		if a := p.decide(t, `{"action":"orders:read"}`).JSON(t); a.Allow || a.Reasons[0] != "policy v1" {
			return fmt.Sprintf("not serving v1 yet: %+v", a)
		}
		return ""
	})
}
