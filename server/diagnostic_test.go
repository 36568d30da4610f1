package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDiagnosticAddr: with a diagnostic listener, status and metrics are
// served there only, health on both, decisions on the main one only; the
// build is in both status and metrics; shutdown closes both listeners.
func TestDiagnosticAddr(t *testing.T) {
	build := BuildInfo{Version: "v9.8.7", Revision: "abc123", GoVersion: "go1.99"}
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.DiagnosticAddr = "127.0.0.1:0"
		o.Build = build
	}})
	addr, stop := start(t, f.srv)
	diag := f.srv.DiagnosticAddr().String()
	main, dg := "http://"+addr, "http://"+diag

	for _, tc := range []struct {
		url  string
		want int
	}{
		{main + "/health/live", 200}, {main + "/health/ready", 200}, {main + "/v1/status", 404}, {main + "/metrics", 404},
		{dg + "/health/live", 200}, {dg + "/health/ready", 200}, {dg + "/v1/status", 200}, {dg + "/metrics", 200},
		{dg + "/v1/decide", 404}, {dg + "/v1/check", 404},
	} {
		if code, body := get(t, tc.url); code != tc.want {
			t.Errorf("GET %s: %d, want %d: %s", tc.url, code, tc.want, body)
		}
	}
	if _, body := get(t, dg+"/metrics"); !strings.Contains(body, `verdict_build_info{goversion="go1.99",revision="abc123",version="v9.8.7"} 1`) {
		t.Errorf("/metrics lacks verdict_build_info:\n%s", body)
	}
	if _, body := get(t, dg+"/v1/status"); !strings.Contains(body, `"version": "v9.8.7"`) {
		t.Errorf("/v1/status lacks the build:\n%s", body)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, a := range []string{addr, diag} {
		if c, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", a)
		}
	}
}
