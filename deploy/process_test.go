package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
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
)

// Deadlines of the process helpers.
const (
	startDeadline = 20 * time.Second // the first log line, then readiness
	stopSlack     = 5 * time.Second  // beyond limits.shutdown_timeout, for the exit after SIGTERM
)

// buildDir holds the binary buildVerdict makes; TestMain removes it.
var buildDir string

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// buildVerdict builds cmd/verdict once per test binary, with the flags of
// `make image` (static, trimmed paths, embedded time zones) so that the
// image test's build reuses the compiled packages.
var buildVerdict = sync.OnceValues(func() (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build verdict: %w", err)
	}
	if buildDir, err = os.MkdirTemp("", "verdict-deploy-"); err != nil {
		return "", err
	}
	bin := filepath.Join(buildDir, "verdict")
	cmd := exec.Command(gobin, "build", "-trimpath", "-tags", "timetzdata", "-o", bin, "./cmd/verdict")
	cmd.Dir = ".." // the module root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/verdict: %w\n%s", err, out)
	}
	return bin, nil
})

// verdictBinary returns the binary buildVerdict makes, failing the test when
// it cannot be built.
func verdictBinary(t *testing.T) string {
	t.Helper()
	bin, err := buildVerdict()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// proc is a started verdict process, or a container runner attached to
// one. Its stderr is scanned for the "listening" log line; both streams are
// kept for the test's log when it fails.
type proc struct {
	name   string
	cmd    *exec.Cmd
	output authztest.SyncBuffer
	addr   chan string   // the bound address, once
	diag   chan string   // the bound diagnostic address, once, if any
	done   chan struct{} // closed when the process has exited
	err    error         // cmd.Wait's result, set before done is closed
}

// startProc starts cmd; a cleanup kills it if the test leaves it running
// and prints its output when the test failed.
func startProc(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, addr: make(chan string, 1), diag: make(chan string, 1), done: make(chan struct{})}
	cmd.Stdout = &p.output
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found, foundDiag := false, false
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&p.output, line)
			addr, diag, ok := listenAddr(line)
			switch {
			case ok && diag && !foundDiag:
				foundDiag = true
				p.diag <- addr
			case ok && !diag && !found:
				found = true
				p.addr <- addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.output.String())
		}
	})
	return p
}

// textListening matches the text log's "listening" lines.
var textListening = regexp.MustCompile(`\bmsg=listening\b.*\baddr=(\S+)`)

// listenAddr reads the bound address from a "listening" log line, in
// either log format; diag is true for the diagnostic listener's.
func listenAddr(line string) (addr string, diag, ok bool) {
	var rec struct {
		Msg    string `json:"msg"`
		Addr   string `json:"addr"`
		Serves string `json:"serves"`
	}
	if json.Unmarshal([]byte(line), &rec) == nil {
		return rec.Addr, rec.Serves == "diagnostics", rec.Msg == "listening" && rec.Addr != ""
	}
	if m := textListening.FindStringSubmatch(line); m != nil {
		return m[1], strings.Contains(line, "serves=diagnostics"), true
	}
	return "", false, false
}

// baseURL waits for the listening line and returns http://ADDR.
func (p *proc) baseURL(t *testing.T) string {
	t.Helper()
	return p.waitAddr(t, p.addr)
}

// diagnosticURL waits for the diagnostic listener's line and returns
// http://ADDR.
func (p *proc) diagnosticURL(t *testing.T) string {
	t.Helper()
	return p.waitAddr(t, p.diag)
}

func (p *proc) waitAddr(t *testing.T, ch chan string) string {
	t.Helper()
	select {
	case addr := <-ch:
		return "http://" + addr
	case <-p.done:
		t.Fatalf("%s exited before listening: %v", p.name, p.err)
	case <-time.After(startDeadline):
		t.Fatalf("%s did not log its address within %v", p.name, startDeadline)
	}
	return ""
}

// stop sends SIGTERM and wants a clean exit (status 0) within d.
func (p *proc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("SIGTERM %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s after SIGTERM: %v, want exit status 0", p.name, p.err)
		}
	case <-time.After(d):
		t.Errorf("%s did not exit within %v of SIGTERM", p.name, d)
	}
}

// fetch fetches url and returns its status and body.
func fetch(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body
}

// waitReady polls /health/ready until it answers 200 and returns the
// serving revision; revisionOtherThan, when not empty, waits for another.
func waitReady(t *testing.T, p *proc, base, revisionOtherThan string) string {
	t.Helper()
	deadline := time.Now().Add(startDeadline)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/health/ready")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
			var ready struct {
				Revision string `json:"revision"`
			}
			if resp.StatusCode == http.StatusOK && json.Unmarshal(body, &ready) == nil &&
				ready.Revision != "" && ready.Revision != revisionOtherThan {
				return ready.Revision
			}
		} else {
			last = err.Error()
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited: %v", p.name, p.err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if revisionOtherThan != "" {
		t.Fatalf("%s still serves revision %s after %v: /health/ready: %s", p.name, revisionOtherThan, startDeadline, strings.TrimSpace(last))
	}
	t.Fatalf("%s not ready within %v: /health/ready: %s", p.name, startDeadline, strings.TrimSpace(last))
	return ""
}
