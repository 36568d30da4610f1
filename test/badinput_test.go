package test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBadInput sends every bad input of DESIGN's failure section to the real
// process. Each answers its documented status with the error shape
// {"allow": false, "error": {"code", "message"}} (never a 200, never allow),
// and the process keeps serving: /health/live stays 200 after each one.
func TestBadInput(t *testing.T) {
	t.Parallel()
	f, p := startWithPolicies(t, "decision_log: off\nlimits:\n  max_body_bytes: 4096\n  max_json_depth: 16\n")
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})

	nested := func(depth int) string {
		return `{"action":"catalog:read","resource":` + strings.Repeat(`{"a":`, depth) + `1` + strings.Repeat(`}`, depth) + `}`
	}
	for _, tc := range []struct {
		name       string
		method     string // default POST
		path       string // default /v1/decide
		body       string
		chunked    bool // send without Content-Length
		header     map[string]string
		wantStatus int
		wantCode   string
	}{
		{name: "malformed JSON", body: `{"action":"orders:read"`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "syntax error", body: `{"action":,}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "not an object", body: `["orders:read"]`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "empty body", body: ``, wantStatus: 400, wantCode: "invalid_request"},
		{name: "trailing data", body: `{"action":"catalog:read"} {"action":"orders:delete"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "wrong type: action number", body: `{"action":42}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "wrong type: token object", body: `{"token":{"sub":"alice"},"action":"orders:read"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "wrong type: resource string", body: `{"action":"orders:read","resource":"orders/42"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "wrong type: action.method number", body: `{"action":{"method":1,"path":"/orders"}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field", body: `{"action":"orders:read","admin":true}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field in caller", body: `{"action":"inventory:reserve","caller":{"id":"payments"}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field in action", body: `{"action":{"name":"orders:read","allow":true}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field in context", body: `{"action":"orders:read","context":{"subject":"root"}}`, wantStatus: 400, wantCode: "invalid_request"},
		// encoding/json matches names case-insensitively and keeps the last
		// of duplicate names: a front that reads the body differently
		// (first key wins, exact case) would see another request than the
		// policy does. Strict decoding refuses both.
		{name: "unknown field: case variant of action", body: `{"ACTION":"catalog:read"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field: case variant beside the real one", body: `{"action":"catalog:read","Action":"orders:delete"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "unknown field: case variant in context", body: `{"action":"catalog:read","context":{"Request_ID":"x"}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "duplicate key", body: `{"action":"orders:delete","action":"catalog:read"}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "duplicate key in resource", body: `{"action":"catalog:read","resource":{"owner":"alice","owner":"bob"}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "caller token and certificate", body: `{"action":"inventory:reserve","caller":{"token":"a.b.c","certificate":"x"}}`, wantStatus: 400, wantCode: "invalid_request"},
		{name: "oversized body", body: `{"action":"catalog:read","resource":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, wantStatus: 413, wantCode: "too_large"},
		{name: "oversized chunked body", chunked: true, body: `{"action":"catalog:read","resource":{"pad":"` + strings.Repeat("x", 5000) + `"}}`, wantStatus: 413, wantCode: "too_large"},
		{name: "deep nesting", body: nested(40), wantStatus: 400, wantCode: "invalid_request"},
		{name: "very deep nesting", body: strings.Repeat("[", 4000), wantStatus: 400, wantCode: "invalid_request"},
		{name: "invalid UTF-8 in a string", body: "{\"action\":\"orders:read\xff\xfe\"}", wantStatus: 400, wantCode: "invalid_request"},
		{name: "invalid UTF-8 in a token", body: "{\"token\":\"" + viewer[:20] + "\xc3\x28" + viewer[20:] + "\",\"action\":\"orders:read\"}", wantStatus: 400, wantCode: "invalid_request"},
		{name: "GET /v1/decide", method: http.MethodGet, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "PUT /v1/decide", method: http.MethodPut, body: `{"action":"catalog:read"}`, wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "POST /health/live", method: http.MethodPost, path: "/health/live", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "DELETE /v1/status", method: http.MethodDelete, path: "/v1/status", wantStatus: 405, wantCode: "method_not_allowed"},
		{name: "unknown route", method: http.MethodGet, path: "/v2/decide", wantStatus: 404, wantCode: "not_found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = "/v1/decide"
			}
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(strings.NewReader(tc.body)) // no length: chunked
			}
			r := do(t, p.Client, method, p.Base+path, body, map[string]string{"Content-Type": "application/json"})
			checkErrorShape(t, r, tc.wantStatus, tc.wantCode)
			if tc.wantStatus == 405 && r.Header.Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
			checkAlive(t, p)
		})
	}

	// Raw protocol abuse on a socket: a body shorter than its Content-Length,
	// garbage instead of HTTP, and a request line with a huge header.
	t.Run("truncated body", func(t *testing.T) {
		conn := dial(t, p.Addr)
		fmt.Fprintf(conn, "POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\":")
		conn.(*net.TCPConn).CloseWrite()
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			checkErrorShape(t, response{Status: resp.StatusCode, Header: resp.Header, Body: b}, 400, "invalid_request")
		} // a closed connection without an answer is also acceptable
		checkAlive(t, p)
	})
	t.Run("garbage", func(t *testing.T) {
		conn := dial(t, p.Addr)
		conn.Write([]byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, conn)
		checkAlive(t, p)
	})
	t.Run("oversized headers", func(t *testing.T) {
		r := do(t, p.Client, http.MethodGet, p.Base+"/health/live", nil, map[string]string{"X-Pad": strings.Repeat("a", 128<<10)})
		if r.Status != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", r.Status)
		}
		checkAlive(t, p)
	})

	if !p.Running() {
		t.Fatal("verdict exited")
	}
	if strings.Contains(p.Stderr.String(), "panic") {
		t.Errorf("verdict logged a panic")
	}
}

// checkErrorShape checks the status and the error shape
// {"allow": false, "error": {"code": code, "message": non-empty}}, with no
// other members than an optional decision_id.
func checkErrorShape(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("status %d, want %d: %s", r.Status, status, r.Body)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	var raw map[string]any
	a := r.JSON(t)
	_ = json.Unmarshal(r.Body, &raw)
	for k := range raw {
		if k != "allow" && k != "error" && k != "decision_id" {
			t.Errorf("error body has member %q: %s", k, r.Body)
		}
	}
	if allow, ok := raw["allow"].(bool); !ok || allow || a.Allow {
		t.Errorf(`error body without "allow": false: %s`, r.Body)
	}
	if a.Error == nil || a.Error.Code != code || a.Error.Message == "" {
		t.Errorf("error body %s, want code %q and a message", r.Body, code)
	}
}

// checkAlive checks that the process is running and /health/live answers 200.
func checkAlive(t *testing.T, p *process) {
	t.Helper()
	if !p.Running() {
		t.Fatalf("verdict exited: %v", p.waitErr)
	}
	r := do(t, p.Client, http.MethodGet, p.Base+"/health/live", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/health/live: %d %s", r.Status, r.Body)
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	return conn
}
