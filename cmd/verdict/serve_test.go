package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestServeDemo runs "verdict serve" without a configuration, reads the
// bound address from the first log line, runs the printed curl commands'
// requests, and shuts down cleanly.
func TestServeDemo(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	var stdout, stderr authztest.SyncBuffer
	done := make(chan int, 1)
	go func() {
		code := run(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, strings.NewReader(""), &stdout, io.MultiWriter(pw, &stderr))
		pw.Close()
		done <- code
	}()
	sc := bufio.NewScanner(pr)
	if !sc.Scan() {
		t.Fatal("no log line")
	}
	m := regexp.MustCompile(`msg=listening addr=(127\.0\.0\.1:\d+)`).FindStringSubmatch(sc.Text())
	if m == nil {
		t.Fatalf("first log line %q does not name the address", sc.Text())
	}
	go func() { // keep draining
		for sc.Scan() {
		}
	}()
	base := "http://" + m[1]
	var curls []string
	deadline := time.Now().Add(10 * time.Second)
	for len(curls) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("no demo block:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
		curls = regexp.MustCompile(`(?m)^  curl .*$`).FindAllString(stderr.String(), -1)
	}
	decide := regexp.MustCompile(`-d '([^']*)'`)
	wants := []string{`"allow":true`, `"allow":false`, `"allow":true`}
	for i, c := range curls[:3] {
		body := decide.FindStringSubmatch(c)[1]
		if !strings.Contains(c, base+"/v1/decide") {
			t.Fatalf("curl %d targets another address: %s", i, c)
		}
		contentType := "application/x-www-form-urlencoded" // what curl -d sends unless told
		if m := regexp.MustCompile(`-H 'Content-Type: ([^']*)'`).FindStringSubmatch(c); m != nil {
			contentType = m[1]
		}
		resp, err := http.Post(base+"/v1/decide", contentType, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), wants[i]) {
			t.Errorf("curl %d: %d %s, want %s", i, resp.StatusCode, b, wants[i])
		}
	}
	stopServe(t, cancel, done, &stderr)
	if n := strings.Count(stdout.String(), `"decision_id"`); n != 3 {
		t.Errorf("decision log has %d lines, want 3:\n%s", n, stdout.String())
	}
}

// TestServeConfigAndPolicyDir serves a watched policy directory from a
// configuration file, with the decision log in a file.
func TestServeConfigAndPolicyDir(t *testing.T) {
	dir := t.TempDir()
	pol := filepath.Join(dir, "policies")
	if err := os.MkdirAll(pol, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(pol, "p.rego"), "package authz\nallow := true\n")
	write(filepath.Join(dir, "verdict.yaml"), "addr: 127.0.0.1:0\npolicy:\n  dir: policies\ndecision_log: decisions.jsonl\nlimits:\n  max_body_bytes: 1024\n")
	ctx, cancel := context.WithCancel(t.Context())
	base, stderr, done := serve(t, ctx, filepath.Join(dir, "verdict.yaml"), io.Discard)
	ask := func() string {
		resp, err := http.Post(base+"/v1/decide", "application/json", strings.NewReader(`{"action":"a:b"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor := func(want string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			if got := ask(); strings.Contains(got, want) {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("never got %s; last %s\n%s", want, got, stderr.String())
			}
		}
	}
	waitFor(`"allow":true`)
	write(filepath.Join(pol, "p.rego"), "package authz\nallow := false\nreasons := [\"edited\"]\n")
	waitFor(`"reasons":["edited"]`)
	resp, err := http.Post(base+"/v1/decide", "application/json", strings.NewReader(`{"action":"`+strings.Repeat("a", 2000)+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Errorf("body over limits.max_body_bytes: %d, want 413", resp.StatusCode)
	}
	stopServe(t, cancel, done, stderr)
	log, err := os.ReadFile(filepath.Join(dir, "decisions.jsonl"))
	if err != nil || strings.Count(string(log), "\n") < 2 {
		t.Errorf("decision log file: %v\n%s", err, log)
	}
}

// TestJSONLogDurations: durations in JSON logs read as durations.
func TestJSONLogDurations(t *testing.T) {
	var b strings.Builder
	logger, err := newLogger(&b, "json", "info")
	if err != nil {
		t.Fatal(err)
	}
	logger.Info("policy loaded", "took", 1500*time.Millisecond)
	if !strings.Contains(b.String(), `"took":"1.5s"`) {
		t.Errorf("log line %s, want took as \"1.5s\"", b.String())
	}
}

// TestServeRefusesPoliciesBeforeListening: a configuration whose policies
// cannot serve is an error before the server binds, naming the file: a
// policy.dir that does not exist (found only once the server listened, by
// the watch, before), and no policies at all (the embedded default
// policies are the demo's, and answered for the configuration's issuers).
func TestServeRefusesPoliciesBeforeListening(t *testing.T) {
	for _, tc := range []struct{ name, config, want string }{
		{"a missing policy.dir", "addr: 127.0.0.1:0\npolicy:\n  dir: nothere\ndecision_log: off\n", ": policy.dir: "},
		{"no policies", "addr: 127.0.0.1:0\ndecision_log: off\n", ": no policies: set policy.dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "verdict.yaml")
			authztest.WriteFile(t, cfg, tc.config)
			code, _, stderr := verdict(t, "serve", "--config", cfg)
			if code != 2 || !strings.Contains(stderr, "invalid configuration: "+cfg+tc.want) || strings.Contains(stderr, "listening") {
				t.Errorf("exit %d, stderr %q; want 2, %q, before listening", code, stderr, tc.want)
			}
		})
	}
}

// TestServeDemoJSONLogs: with --log-format json every stderr line of the
// demo is a JSON record: the demo says what it trusts in one, with no
// token in it, instead of the text block.
func TestServeDemoJSONLogs(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	stderr := new(authztest.SyncBuffer)
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--log-format", "json"}, strings.NewReader(""), io.Discard, stderr)
	}()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), "development tokens only"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no demo record:\n%s", stderr.String())
		}
	}
	stopServe(t, cancel, done, stderr)
	for _, line := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if !json.Valid([]byte(line)) || strings.Contains(line, "eyJ") {
			t.Errorf("not a JSON record, or one with a token: %s", line)
		}
	}
}

// TestServeEntrypoint: serve --entrypoint serves a policy set whose
// package is not authz (the AuthZEN Todo example's todo), as check, test
// and decide do; without it that set does not load.
func TestServeEntrypoint(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := serveArgs(t, ctx, io.Discard, "--policies", "../../policies/examples/authzen-todo",
		"--entrypoint", "todo", "--addr", "127.0.0.1:0")
	waitReady(t, base, stderr)
	stopServe(t, cancel, done, stderr)
}

// waitReady fails t unless the server at base is ready within 10 s.
func waitReady(t *testing.T, base string, stderr *authztest.SyncBuffer) {
	t.Helper()
	resp, err := http.Get(base + "/health/ready")
	for deadline := time.Now().Add(10 * time.Second); err == nil && resp.StatusCode != http.StatusOK && time.Now().Before(deadline); {
		resp.Body.Close()
		time.Sleep(20 * time.Millisecond)
		resp, err = http.Get(base + "/health/ready")
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("not ready: %v %v\n%s", resp, err, stderr.String())
	}
	resp.Body.Close()
}

// TestServeSIGHUPReopensDecisionLog: SIGHUP reopens the decision log's
// file by its name, so that a log rotated by renaming is written anew;
// the server goes on. SIGHUP ended the process at once (no drain, no
// flushed log), and then, ignored, left the log written into the renamed
// file.
func TestServeSIGHUPReopensDecisionLog(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "decisions.jsonl")
	cfg := filepath.Join(dir, "verdict.yaml")
	authztest.WriteFile(t, cfg, "addr: 127.0.0.1:0\ndecision_log: decisions.jsonl\n")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	base, stderr, done := serveArgs(t, ctx, io.Discard, "--config", cfg, "--policies", "../../policies")
	waitReady(t, base, stderr)
	decide := func() {
		t.Helper()
		resp, err := http.Post(base+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("decide: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	logged := func(path string) int {
		data, _ := os.ReadFile(path)
		return strings.Count(string(data), `"decision_id"`)
	}
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s\n%s", what, stderr.String())
			}
		}
	}
	decide()
	waitFor("the first decision is not logged", func() bool { return logged(logPath) == 1 })
	rotated := logPath + ".1"
	if err := os.Rename(logPath, rotated); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor("no SIGHUP line naming the file", func() bool { return strings.Contains(stderr.String(), "signal=SIGHUP reopened="+logPath) })
	decide()
	waitFor("the decision after SIGHUP is not in a new file", func() bool { return logged(logPath) == 1 })
	if n := logged(rotated); n != 1 {
		t.Errorf("the rotated file holds %d decisions, want the one before SIGHUP", n)
	}
	stopServe(t, cancel, done, stderr)
}
