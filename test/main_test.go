// Package test holds Verdict's end-to-end tests. They build the real
// binary once (TestMain), start it on 127.0.0.1:0 with a configuration each
// test writes into its own temporary directory, read the bound address from
// the first log line, and talk to it over HTTP, HTTPS with client
// certificates, and through real nginx and Caddy forward-auth proxies.
//
// Every test starts its own verdict process, so the tests run in parallel.
// A failing test prints the process's stderr (and stdout, the decision log).
package test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/client"
)

// verdictBin is the binary TestMain builds.
var verdictBin string

// Deadlines of the process helpers.
const (
	startDeadline = 15 * time.Second // first log line, then readiness
	stopDeadline  = 15 * time.Second // exit after SIGTERM (the default shutdown timeout is 10 s)
)

// e2eVersion is the version the tested binary is stamped with.
const e2eVersion = "v0.0.0-e2e"

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	flag.Parse()
	dir, err := os.MkdirTemp("", "verdict-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	gobin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: the go command is needed to build verdict:", err)
		return 2
	}
	bin := filepath.Join(dir, "verdict")
	// Stamped as make image stamps a release, so that tests see the version.
	build := exec.Command(gobin, "build", "-ldflags", "-X main.version="+e2eVersion, "-o", bin, "./cmd/verdict")
	build.Dir = ".." // the module root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	start := time.Now()
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: go build ./cmd/verdict:", err)
		return 2
	}
	if testing.Verbose() {
		fmt.Fprintf(os.Stderr, "e2e: built verdict in %v\n", time.Since(start).Round(time.Millisecond))
	}
	verdictBin = bin
	return m.Run()
}

// child is a started command and the goroutine that waits for it: a
// verdict process, a proxy, an identity provider.
type child struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when the command has exited
	waitErr error         // cmd.Wait's result, set before done is closed
}

// startChild starts cmd. When beforeWait is set, the waiting goroutine
// runs it before cmd.Wait (to read a StdoutPipe to its end, as Wait
// requires).
func startChild(cmd *exec.Cmd, beforeWait func()) (*child, error) {
	c := &child{cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		if beforeWait != nil {
			beforeWait()
		}
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// exited reports whether the command has exited.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitExit waits up to d for the command to exit and kills it when it does
// not; it reports whether the command exited by itself.
func (c *child) waitExit(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		_ = c.cmd.Process.Kill()
		<-c.done
		return false
	}
}

// sigterm sends SIGTERM; a command that has exited meanwhile is not an
// error.
func (c *child) sigterm(t *testing.T, name string) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM %s: %v", name, err)
	}
}

// terminate sends SIGTERM unless the command has exited already, and
// waits up to stopDeadline for it to exit, failing the test when it has
// to be killed.
func (c *child) terminate(t *testing.T, name string) {
	t.Helper()
	if c.exited() {
		return
	}
	c.sigterm(t, name)
	if !c.waitExit(stopDeadline) {
		t.Errorf("%s did not exit within %v of SIGTERM", name, stopDeadline)
	}
}

// process is a running verdict serve.
type process struct {
	*child
	Addr   string       // host:port from the first log line
	Base   string       // http://Addr or https://Addr
	Client *http.Client // talks to Base (with the client TLS config, if any)
	Stderr *authztest.SyncBuffer
	Stdout *authztest.SyncBuffer
	Home   string // HOME and the XDG directories point into it

	stopOnce sync.Once
}

// startOptions configures startVerdict.
type startOptions struct {
	// Args follow "serve".
	Args []string
	// Env is added to the environment (after HOME and XDG_* pointing to a
	// temporary directory).
	Env []string
	// ClientTLS, when set, makes Base https and is the client's TLS
	// configuration (also for the readiness poll).
	ClientTLS *tls.Config
	// NoReadyWait skips waiting for /health/ready (for a process that is
	// expected not to become ready).
	NoReadyWait bool
}

var listeningRE = regexp.MustCompile(`\blistening addr=(\S+)`)

// startVerdict runs "verdict serve ARGS", reads the bound address from its
// first stderr line, and waits until /health/ready answers 200. A cleanup
// stops it with SIGTERM (unless the test already did) and checks the clean
// exit; when the test failed it prints the process's stderr and stdout.
func startVerdict(t *testing.T, o startOptions) *process {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(verdictBin, append([]string{"serve"}, o.Args...)...)
	cmd.Env = append(append(os.Environ(), homeEnv(home)...), o.Env...)
	p := &process{Stderr: &authztest.SyncBuffer{}, Stdout: &authztest.SyncBuffer{}, Home: home}
	cmd.Stderr, cmd.Stdout = p.Stderr, p.Stdout
	var err error
	if p.child, err = startChild(cmd, nil); err != nil {
		t.Fatalf("start verdict: %v", err)
	}
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("verdict %s\n--- stderr ---\n%s--- stdout (decision log) ---\n%s",
				strings.Join(cmd.Args[1:], " "), p.Stderr.String(), tail(p.Stdout.String(), 40))
		}
	})

	// The first log line names the bound address.
	deadline := time.Now().Add(startDeadline)
	var first string
	for {
		out := p.Stderr.String()
		if line, _, ok := strings.Cut(out, "\n"); ok {
			first = line
			break
		}
		select {
		case <-p.done:
			t.Fatalf("verdict exited before its first log line: %v", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line from verdict within %v", startDeadline)
		}
		time.Sleep(5 * time.Millisecond)
	}
	m := listeningRE.FindStringSubmatch(first)
	if m == nil {
		t.Fatalf("first log line does not name the bound address (want %q): %q", "listening addr=HOST:PORT", first)
	}
	p.Addr = m[1]
	scheme := "http"
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	if o.ClientTLS != nil {
		scheme = "https"
		tr.TLSClientConfig = o.ClientTLS
	}
	p.Base = scheme + "://" + p.Addr
	p.Client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	if !o.NoReadyWait {
		p.waitReady(t, deadline)
	}
	return p
}

// homeEnv is the environment of a process whose HOME and XDG base
// directories point into home, so that it stores nothing in the user's.
func homeEnv(home string) []string {
	return []string{
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_DATA_HOME=" + filepath.Join(home, ".local", "share"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
	}
}

// waitReady polls /health/ready until it answers 200.
func (p *process) waitReady(t *testing.T, deadline time.Time) {
	t.Helper()
	var last string
	for {
		resp, err := p.Client.Get(p.Base + "/health/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			t.Fatalf("verdict exited before it was ready: %v", p.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("verdict not ready within %v: last answer %s", startDeadline, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Running reports whether the process has not exited.
func (p *process) Running() bool { return !p.exited() }

// Signal sends sig to the process.
func (p *process) Signal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal verdict: %v", err)
	}
}

// Wait waits for the process to exit, up to stopDeadline after now, and
// checks that it exited 0. It kills the process when it does not exit in
// time.
func (p *process) Wait(t *testing.T) {
	t.Helper()
	if !p.waitExit(stopDeadline) {
		t.Errorf("verdict did not exit within %v of SIGTERM", stopDeadline)
		return
	}
	if p.waitErr != nil {
		t.Errorf("verdict did not exit cleanly after SIGTERM: %v (exit code %d)", p.waitErr, p.cmd.ProcessState.ExitCode())
	}
}

// Stop sends SIGTERM and checks for a timely, clean exit (code 0).
func (p *process) Stop(t *testing.T) {
	t.Helper()
	p.stop(t)
}

func (p *process) stop(t *testing.T) {
	t.Helper()
	p.stopOnce.Do(func() {
		if !p.Running() {
			if p.waitErr != nil {
				t.Errorf("verdict exited on its own: %v", p.waitErr)
			}
			return
		}
		p.sigterm(t, "verdict")
		p.Wait(t)
		if !strings.Contains(p.Stderr.String(), "shutting down") {
			t.Errorf("verdict's log does not say it is shutting down")
		}
	})
}

func tail(s string, lines int) string {
	parts := strings.SplitAfter(s, "\n")
	if len(parts) > lines {
		return fmt.Sprintf("[... %d lines]\n", len(parts)-lines) + strings.Join(parts[len(parts)-lines:], "")
	}
	return s
}

// answer is a decision or the error shape, as /v1/decide and /v1/check
// answer: the public client's Decision (the wire format it mirrors) and the
// error that comes instead of one.
type answer struct {
	client.Decision
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// statusDoc is the part of /v1/status the tests read.
type statusDoc struct {
	Ready        bool   `json:"ready"`
	Revision     string `json:"revision"`
	Loads        uint64 `json:"loads"`
	LoadFailures uint64 `json:"load_failures"`
	Evaluator    string `json:"evaluator"`
	LastError    *struct {
		Message  string       `json:"message"`
		Problems []problemDoc `json:"problems"`
	} `json:"last_error"`
	Source *struct {
		LastError    string       `json:"last_error"`
		ReloadErrors uint64       `json:"reload_errors"`
		Errors       []problemDoc `json:"errors"`
	} `json:"source"`
	KeySets []struct {
		Issuer    string   `json:"issuer"`
		URL       string   `json:"url"`
		Ready     bool     `json:"ready"`
		Source    string   `json:"source"`
		KeyIDs    []string `json:"key_ids"`
		LastError string   `json:"last_error"`
	} `json:"key_sets"`
}

// problemDoc is a policy problem in /v1/status.
type problemDoc struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Message string `json:"message"`
}

// status gets /v1/status, decoded and raw.
func status(t *testing.T, p *process) (statusDoc, string) {
	t.Helper()
	r := do(t, p.Client, http.MethodGet, p.Base+"/v1/status", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/v1/status: %d %s", r.Status, r.Body)
	}
	var s statusDoc
	if err := json.Unmarshal(r.Body, &s); err != nil {
		t.Fatalf("/v1/status: %v: %s", err, r.Body)
	}
	return s, string(r.Body)
}

// response is one HTTP exchange's outcome.
type response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body as an answer and fails the test when it is not one.
func (r response) JSON(t *testing.T) answer {
	t.Helper()
	var a answer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		t.Fatalf("answer is not JSON (%v): status %d, body %q", err, r.Status, r.Body)
	}
	return a
}

// do sends one request and reads the whole answer.
func do(t *testing.T, c *http.Client, method, url string, body io.Reader, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	return response{Status: resp.StatusCode, Header: resp.Header, Body: b}
}

// decide posts body to /v1/decide.
func (p *process) decide(t *testing.T, body string) response {
	t.Helper()
	return do(t, p.Client, http.MethodPost, p.Base+"/v1/decide", strings.NewReader(body),
		map[string]string{"Content-Type": "application/json"})
}

// decideOK posts body to /v1/decide, fails the test unless the answer is
// 200, and returns the decision.
func (p *process) decideOK(t *testing.T, body string) answer {
	t.Helper()
	r := p.decide(t, body)
	if r.Status != http.StatusOK {
		t.Fatalf("decide: %d %s, want 200", r.Status, r.Body)
	}
	return r.JSON(t)
}

// mustJSON marshals v.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// eventually polls cond every 20 ms until it returns "" (done) or the
// deadline passes, then fails with cond's last complaint.
func eventually(t *testing.T, within time.Duration, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metrics is the /metrics text.
func metrics(t *testing.T, p *process) string {
	t.Helper()
	r := do(t, p.Client, http.MethodGet, p.Base+"/metrics", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.Status)
	}
	return string(r.Body)
}

// grepLines is the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
