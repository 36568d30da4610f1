package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestServeUploadFlushKeepsToTheShutdownBudget: with a collector that
// never answers, serve still exits 0 within limits.shutdown_timeout of its
// stop (not the upload's own 30 s request timeout), and says what it gave
// up; no decision is written anywhere else (output off).
func TestServeUploadFlushKeepsToTheShutdownBudget(t *testing.T) {
	release := make(chan struct{})
	var requests atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(collector.Close)
	t.Cleanup(func() { close(release) }) // runs before Close

	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, filepath.Join(dir, "policies", "p.rego"), "package authz\nallow := true\n")
	authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), `addr: 127.0.0.1:0
policy:
  dir: policies
decision_log:
  output: off
  upload: {url: "`+collector.URL+`/verdict", interval: 1h, timeout: 30s}
limits:
  shutdown_timeout: 1s
`)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var stdout authztest.SyncBuffer
	base, stderr, done := serve(t, ctx, filepath.Join(dir, "verdict.yaml"), &stdout)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		resp, err := http.Post(base+"/v1/decide", "application/json", strings.NewReader(`{"action":"a:b"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(b), `"allow":true`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never allowed: %s\n%s", b, stderr.String())
		}
	}
	stopped := time.Now()
	stopServe(t, cancel, done, stderr)
	if el := time.Since(stopped); el > 5*time.Second {
		t.Errorf("serve took %v to stop with a 1s shutdown budget", el)
	}
	if requests.Load() == 0 {
		t.Error("the flush never reached the collector")
	}
	if !strings.Contains(stderr.String(), "decision log batch dropped") || !strings.Contains(stderr.String(), "upload_failed") {
		t.Errorf("the given-up records are not reported:\n%s", stderr.String())
	}
	if stdout.String() != "" {
		t.Errorf("decisions on stdout with output off:\n%s", stdout.String())
	}
}
