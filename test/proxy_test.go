package test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// upstream is the protected service behind a proxy: it answers every
// request with the identity headers it received, as JSON.
type upstream struct {
	*httptest.Server
	hits atomic.Int64
}

// seen is what the upstream received.
type seen struct {
	Method  string   `json:"method"`
	URI     string   `json:"uri"`
	Subject []string `json:"subject"`
	Roles   []string `json:"roles"`
	// Underscored names the x-verdict-* headers written with '_' that
	// reached the upstream: a CGI-style upstream reads them as Verdict's.
	Underscored []string `json:"underscored"`
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		var underscored []string
		for k := range r.Header {
			if strings.Contains(k, "_") && strings.HasPrefix(strings.ToLower(strings.ReplaceAll(k, "_", "-")), "x-verdict-") {
				underscored = append(underscored, k)
			}
		}
		_ = json.NewEncoder(w).Encode(seen{
			Method:      r.Method,
			URI:         r.RequestURI,
			Subject:     r.Header.Values("X-Verdict-Subject"),
			Roles:       r.Header.Values("X-Verdict-Roles"),
			Underscored: underscored,
		})
	}))
	t.Cleanup(u.Close)
	return u
}

// freePort returns a loopback port that was free a moment ago: bind :0,
// close. The caller retries when the port is taken before it binds again.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

// external is a running proxy (nginx or Caddy).
type external struct {
	*child
	name    string
	output  *authztest.SyncBuffer // stdout and stderr
	logFile string                // a log file to print on failure, if any
}

// startExternal runs bin with args and stops it with SIGTERM at cleanup,
// printing its output when the test failed.
func startExternal(t *testing.T, name, bin string, args, env []string, logFile string) *external {
	t.Helper()
	e := &external{name: name, output: &authztest.SyncBuffer{}, logFile: logFile}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = e.output, e.output
	var err error
	if e.child, err = startChild(cmd, nil); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		e.terminate(t, name)
		if t.Failed() {
			t.Logf("%s output:\n%s%s", name, e.output.String(), e.log())
		}
	})
	return e
}

func (e *external) log() string {
	if e.logFile == "" {
		return ""
	}
	b, _ := os.ReadFile(e.logFile)
	return fmt.Sprintf("--- %s ---\n%s", e.logFile, b)
}

// waitServing polls the proxy through c until it answers HTTP (any
// status), or fails when it exits. It reports false when the proxy exited
// because its port was taken, so that the caller can retry on another.
func (e *external) waitServing(t *testing.T, c *http.Client, url string) bool {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	for {
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
			return true
		}
		if e.exited() {
			out := e.output.String() + e.log()
			if strings.Contains(strings.ToLower(out), "address already in use") {
				return false
			}
			t.Fatalf("%s exited: %v\n%s", e.name, e.waitErr, out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s does not answer %s within %v: %v", e.name, url, startDeadline, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startProxy starts a proxy on a free loopback port and returns its base
// URL, scheme://127.0.0.1:port, once it answers through c. start writes
// the proxy's configuration for port and starts it; first is true on the
// first attempt only, to check the configuration once. When the port was
// taken between freePort and the proxy binding it, the proxy exits and
// startProxy tries another port, five times at most.
func startProxy(t *testing.T, scheme string, c *http.Client, start func(port int, first bool) *external) string {
	t.Helper()
	for attempt := 1; ; attempt++ {
		port := freePort(t)
		e := start(port, attempt == 1)
		base := scheme + "://127.0.0.1:" + strconv.Itoa(port)
		if e.waitServing(t, c, base+"/catalog/1") {
			return base
		}
		if attempt == 5 {
			t.Fatalf("%s: no free port after 5 attempts", e.name)
		}
	}
}

// startNginx runs the nginx binary bin with the configuration conf returns
// for a port, written with every other file of nginx's under prefix, and
// returns its base URL (see startProxy).
func startNginx(t *testing.T, bin, prefix, scheme string, c *http.Client, conf func(port int) string) string {
	t.Helper()
	path := filepath.Join(prefix, "nginx.conf")
	errLog := filepath.Join(prefix, "error.log")
	args := []string{"-c", path, "-p", prefix, "-e", errLog}
	return startProxy(t, scheme, c, func(port int, first bool) *external {
		authztest.WriteFile(t, path, conf(port))
		if first {
			if out, err := exec.CommandContext(t.Context(), bin, append([]string{"-t"}, args...)...).CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v\n%s", err, out)
			}
		}
		return startExternal(t, "nginx", bin, args, nil, errLog)
	})
}

// nginxHTTP is an nginx configuration for one foreground process whose
// every file (pid, logs, temporary files) lies under prefix, with body as
// the content of its http block.
func nginxHTTP(prefix, body string) string {
	return fmt.Sprintf(`daemon off;
master_process off;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 128; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;

%[2]s}
`, prefix, body)
}

// nginxAuthLocation is the internal location /_verdict that auth_request
// calls: verdict's /v1/check with the original method and URI, without the
// body, and with the given extra proxy_set_header directives.
func nginxAuthLocation(verdictAddr string, setHeaders ...string) string {
	var extra strings.Builder
	for _, h := range setHeaders {
		extra.WriteString("            proxy_set_header " + h + ";\n")
	}
	return fmt.Sprintf(`        location = /_verdict {
            internal;
            proxy_pass http://%s/v1/check;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI $request_uri;
            proxy_set_header X-Original-Method $request_method;
%s        }
`, verdictAddr, extra.String())
}

// nginxConf is an nginx configuration protecting the upstream with
// auth_request to verdict's /v1/check.
func nginxConf(prefix string, port int, verdictAddr, upstreamAddr string) string {
	return nginxHTTP(prefix, fmt.Sprintf(`    server {
        listen 127.0.0.1:%d;

%s
        location / {
            auth_request /_verdict;
            auth_request_set $verdict_subject $upstream_http_x_verdict_subject;
            auth_request_set $verdict_roles $upstream_http_x_verdict_roles;
            proxy_set_header X-Verdict-Subject $verdict_subject;
            proxy_set_header X-Verdict-Roles $verdict_roles;
            proxy_pass http://%s;
        }
    }
`, port, nginxAuthLocation(verdictAddr), upstreamAddr))
}

// TestNginxForwardAuth puts a real nginx with auth_request in front of an
// upstream, with verdict as the authorizer.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	nginx := needBinary(t, "nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
	f, v := startWithPolicies(t, "decision_log: off\n")
	up := newUpstream(t)
	prefix := t.TempDir()
	base := startNginx(t, nginx, prefix, "http", &http.Client{Timeout: 2 * time.Second}, func(port int) string {
		return nginxConf(prefix, port, v.Addr, up.Listener.Addr().String())
	})
	// nginx drops header names with '_' (underscores_in_headers off) or '.'
	// (ignore_invalid_headers): an X_Verdict_Roles or X.Verdict.Roles never
	// reaches verdict or the upstream.
	checkForwardAuth(t, f, base, up, http.StatusInternalServerError, http.StatusOK)
}

// TestCaddyForwardAuth puts a real Caddy with forward_auth in front of an
// upstream, with verdict as the authorizer. Caddy sends the original method
// and URI as X-Forwarded-Method and X-Forwarded-Uri.
func TestCaddyForwardAuth(t *testing.T) {
	t.Parallel()
	caddy := needBinary(t, "caddy", "/usr/bin/caddy", "/usr/local/bin/caddy")
	f, v := startWithPolicies(t, "decision_log: off\n")
	up := newUpstream(t)
	dir := t.TempDir()
	env := homeEnv(filepath.Join(dir, "home"))
	caddyfile := filepath.Join(dir, "Caddyfile")
	base := startProxy(t, "http", &http.Client{Timeout: 2 * time.Second}, func(port int, first bool) *external {
		authztest.WriteFile(t, caddyfile, fmt.Sprintf(`{
	admin off
	auto_https off
	storage file_system %s
}

http://127.0.0.1:%d {
	bind 127.0.0.1
	forward_auth %s {
		uri /v1/check
		copy_headers X-Verdict-Subject X-Verdict-Roles
	}
	reverse_proxy %s
}
`, filepath.Join(dir, "storage"), port, v.Addr, up.Listener.Addr().String()))
		if first {
			cmd := exec.CommandContext(t.Context(), caddy, "validate", "--config", caddyfile, "--adapter", "caddyfile")
			cmd.Env = append(os.Environ(), env...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("caddy validate: %v\n%s", err, out)
			}
		}
		return startExternal(t, "caddy", caddy, []string{"run", "--config", caddyfile, "--adapter", "caddyfile"}, env, "")
	})
	// Caddy passes header names with '_' or '.' on, to verdict (which
	// refuses x-verdict-* ones) and to the upstream.
	checkForwardAuth(t, f, base, up, http.StatusBadRequest, http.StatusBadRequest)
}

// checkForwardAuth runs the same assertions through either proxy: allowed
// requests reach the upstream with verdict's identity headers (never the
// client's own), denied ones never reach it.
//
// refused is the status the proxy answers when verdict answers 400: nginx's
// auth_request turns it into a 500, Caddy's forward_auth passes it on.
// underscored is its answer to an allowed request carrying X_Verdict_Roles
// or X.Verdict.Roles (which PHP reads as HTTP_X_VERDICT_ROLES).
func checkForwardAuth(t *testing.T, f *fixture, base string, up *upstream, refused, underscored int) {
	t.Helper()
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	expired := f.Issuer.Mint(t, map[string]any{"roles": []string{"admin"},
		"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()})
	c := &http.Client{Timeout: 10 * time.Second}
	t.Cleanup(c.CloseIdleConnections)

	for _, tc := range []struct {
		name        string
		method      string
		path        string
		header      map[string]string
		wantStatus  int
		wantSubject []string // at the upstream, on 200
		wantRoles   []string
	}{
		{name: "viewer reads an order", method: "GET", path: "/orders/42",
			header:     map[string]string{"Authorization": "Bearer " + viewer},
			wantStatus: 200, wantSubject: []string{"alice"}, wantRoles: []string{"viewer"}},
		{name: "viewer reads an order with a query", method: "GET", path: "/orders/42?expand=items",
			header:     map[string]string{"Authorization": "Bearer " + viewer},
			wantStatus: 200, wantSubject: []string{"alice"}, wantRoles: []string{"viewer"}},
		{name: "client-sent identity headers are overwritten", method: "GET", path: "/orders/42",
			header:     map[string]string{"Authorization": "Bearer " + viewer, "X-Verdict-Subject": "mallory", "X-Verdict-Roles": "admin"},
			wantStatus: 200, wantSubject: []string{"alice"}, wantRoles: []string{"viewer"}},
		{name: "anonymous public with forged identity headers", method: "GET", path: "/catalog/7",
			header:     map[string]string{"X-Verdict-Subject": "mallory", "X-Verdict-Roles": "admin"},
			wantStatus: 200, wantSubject: nil, wantRoles: nil},
		{name: "an identity header written with _ never reaches the upstream", method: "GET", path: "/orders/42",
			header:     map[string]string{"Authorization": "Bearer " + viewer, "X_Verdict_Roles": "admin"},
			wantStatus: underscored, wantSubject: []string{"alice"}, wantRoles: []string{"viewer"}},
		{name: "an identity header written with . never reaches the upstream", method: "GET", path: "/orders/42",
			header:     map[string]string{"Authorization": "Bearer " + viewer, "X.Verdict.Roles": "admin"},
			wantStatus: underscored, wantSubject: []string{"alice"}, wantRoles: []string{"viewer"}},
		{name: "no token", method: "GET", path: "/orders/42", wantStatus: 401},
		{name: "client-sent X-Verdict-Action is not believed", method: "GET", path: "/orders/42",
			header: map[string]string{"X-Verdict-Action": "catalog:read"}, wantStatus: 401},
		{name: "no token, forged identity headers", method: "GET", path: "/orders/42",
			header: map[string]string{"X-Verdict-Subject": "alice", "X-Verdict-Roles": "admin"}, wantStatus: 401},
		{name: "dot segments cannot turn a private path public", method: "GET", path: "/catalog/../orders/42", wantStatus: refused},
		{name: "a servlet path parameter cannot turn a private path public", method: "GET", path: "/catalog/..;/orders/42", wantStatus: refused},
		{name: "an encoded dot segment is refused", method: "GET", path: "/catalog/%2e%2e/orders/42", wantStatus: refused},
		{name: "a double-encoded dot segment is refused", method: "GET", path: "/catalog/%252e%252e/orders/42", wantStatus: refused},
		{name: "client-sent forwarded certificate is not read (no header is configured)", method: "GET", path: "/catalog/7",
			header: map[string]string{"X-SSL-Client-Cert": "-----BEGIN%20CERTIFICATE-----"}, wantStatus: 200},
		{name: "client-sent X-Forwarded-* beside the proxy's own family is refused", method: "DELETE", path: "/orders/42",
			header: map[string]string{"Authorization": "Bearer " + viewer, "X-Forwarded-Method": "GET", "X-Original-Method": "GET",
				"X-Forwarded-Uri": "/orders/42", "X-Original-Uri": "/orders/42"}, wantStatus: refused},
		{name: "expired token", method: "GET", path: "/orders/42",
			header: map[string]string{"Authorization": "Bearer " + expired}, wantStatus: 401},
		{name: "viewer deletes an order", method: "DELETE", path: "/orders/42",
			header: map[string]string{"Authorization": "Bearer " + viewer}, wantStatus: 403},
		{name: "viewer writes an order", method: "POST", path: "/orders",
			header: map[string]string{"Authorization": "Bearer " + viewer}, wantStatus: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hits := up.hits.Load()
			r := do(t, c, tc.method, base+tc.path, nil, tc.header)
			if r.Status != tc.wantStatus {
				t.Fatalf("%s %s: %d, want %d: %s", tc.method, tc.path, r.Status, tc.wantStatus, r.Body)
			}
			if tc.wantStatus != 200 {
				if up.hits.Load() != hits {
					t.Errorf("a %d request reached the upstream", r.Status)
				}
				if tc.wantStatus == 401 && !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", r.Header.Get("WWW-Authenticate"))
				}
				return
			}
			var s seen
			if err := json.Unmarshal(r.Body, &s); err != nil {
				t.Fatalf("not the upstream's answer: %v: %s", err, r.Body)
			}
			if s.Method != tc.method || s.URI != tc.path {
				t.Errorf("upstream saw %s %s, want %s %s", s.Method, s.URI, tc.method, tc.path)
			}
			if len(s.Underscored) > 0 {
				t.Errorf("upstream saw client-sent %q", s.Underscored)
			}
			if !equalHeader(s.Subject, tc.wantSubject) || !equalHeader(s.Roles, tc.wantRoles) {
				t.Errorf("upstream saw X-Verdict-Subject %q, X-Verdict-Roles %q; want %q, %q",
					s.Subject, s.Roles, tc.wantSubject, tc.wantRoles)
			}
		})
	}
}

// equalHeader compares header values, an empty value standing for none.
func equalHeader(got, want []string) bool {
	clean := func(vs []string) []string {
		var out []string
		for _, v := range vs {
			if v != "" {
				out = append(out, v)
			}
		}
		return out
	}
	return slices.Equal(clean(got), clean(want))
}
