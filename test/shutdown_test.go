package test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown sends SIGTERM while requests are in flight:
//   - requests whose handler is already running (a slow client still
//     sending its body, seen through Expect: 100-continue) complete with a
//     decision after the listener has closed;
//   - a loop of keep-alive clients sees only decisions, then refused
//     connections: no reset or truncated answer for an accepted request;
//   - the process exits 0, promptly, and the decision log holds every
//     decision that was answered.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	f, p := startWithPolicies(t, "decision_log: decisions.jsonl\nlimits:\n  shutdown_timeout: 8s\n")
	dlog := filepath.Join(f.Dir, "decisions.jsonl") // relative paths resolve against the configuration's directory
	viewer := f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	body := mustJSON(t, map[string]any{"token": viewer, "action": "orders:read"})

	var (
		mu      sync.Mutex
		ids     []string // decision IDs of every answered request
		badErrs []string // failures that a graceful shutdown must not cause
	)
	record := func(id string) { mu.Lock(); ids = append(ids, id); mu.Unlock() }
	bad := func(format string, args ...any) {
		mu.Lock()
		badErrs = append(badErrs, fmt.Sprintf(format, args...))
		mu.Unlock()
	}

	// Slow requests: headers sent, the handler running (it asked for the
	// body with 100 Continue), the body not yet sent.
	const slow = 4
	conns := make([]net.Conn, slow)
	readers := make([]*bufio.Reader, slow)
	for i := range conns {
		conns[i] = dial(t, p.Addr)
		conns[i].SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprintf(conns[i], "POST /v1/decide HTTP/1.1\r\nHost: verdict\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
		readers[i] = bufio.NewReader(conns[i])
		line, err := readers[i].ReadString('\n')
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 100") {
			t.Fatalf("slow request %d: want 100 Continue, got %q, %v", i, line, err)
		}
		if blank, err := readers[i].ReadString('\n'); err != nil || blank != "\r\n" {
			t.Fatalf("slow request %d: after 100 Continue: %q, %v", i, blank, err)
		}
	}

	// The load: keep-alive clients in a loop until the server refuses them.
	tr := &http.Transport{MaxIdleConnsPerHost: 8}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	var (
		wg         sync.WaitGroup
		answered   atomic.Int64
		sigtermed  atomic.Bool
		afterSigOK atomic.Int64
	)
	const workers = 6
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest(http.MethodPost, p.Base+"/v1/decide", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				// Replayable: a request that races the server closing an
				// idle connection is retried on a new one, as for GET.
				req.Header.Set("Idempotency-Key", "e2e")
				resp, err := client.Do(req)
				if err != nil {
					// After SIGTERM the listener closes: new connections are
					// refused, and the kernel resets those still queued in the
					// accept backlog and idle keep-alive connections a request
					// raced onto as they were closed. None of these requests
					// was read, so none has an answer to lose.
					if sigtermed.Load() && (errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)) {
						return
					}
					bad("request error (SIGTERM sent: %v): %v", sigtermed.Load(), err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				var a answer
				if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || !a.Allow || a.ID == "" {
					bad("answer (SIGTERM sent: %v): %d %q, %v", sigtermed.Load(), resp.StatusCode, b, err)
					return
				}
				record(a.ID)
				answered.Add(1)
				if sigtermed.Load() {
					afterSigOK.Add(1)
				}
			}
			bad("the load loop ran for 20s without the server going away")
		}()
	}

	// Let the load run, then SIGTERM.
	eventually(t, 5*time.Second, func() string {
		if answered.Load() < 200 {
			return "fewer than 200 answered requests"
		}
		return ""
	})
	sigtermed.Store(true)
	sigAt := time.Now()
	p.Signal(t, syscall.SIGTERM)

	// The listener closes while the slow requests are in flight.
	eventually(t, 5*time.Second, func() string {
		c, err := net.DialTimeout("tcp", p.Addr, time.Second)
		if err == nil {
			c.Close()
			return "verdict still accepts connections after SIGTERM"
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return "dial: " + err.Error()
		}
		return ""
	})
	if !p.Running() {
		t.Fatal("verdict exited with requests in flight")
	}

	// The slow requests finish and get their decisions.
	for i, c := range conns {
		if _, err := io.WriteString(c, body); err != nil {
			t.Errorf("slow request %d: sending the body after SIGTERM: %v", i, err)
			continue
		}
		resp, err := http.ReadResponse(readers[i], nil)
		if err != nil {
			t.Errorf("slow request %d: no answer after SIGTERM: %v", i, err)
			continue
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		var a answer
		if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(b, &a) != nil || !a.Allow {
			t.Errorf("slow request %d after SIGTERM: %d %q, %v", i, resp.StatusCode, b, err)
			continue
		}
		record(a.ID)
	}
	finished := time.Now()

	p.Wait(t)
	exitAfter := time.Since(finished)
	wg.Wait()
	t.Logf("%d requests answered (%d after SIGTERM); exit %v after SIGTERM, %v after the last in-flight request",
		answered.Load(), afterSigOK.Load(), time.Since(sigAt).Round(time.Millisecond), exitAfter.Round(time.Millisecond))
	if exitAfter > 3*time.Second {
		t.Errorf("verdict took %v to exit after its last in-flight request finished", exitAfter)
	}
	for _, e := range badErrs {
		t.Error(e)
	}

	// Every answered decision is in the decision log (flushed on exit).
	data, err := os.ReadFile(dlog)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec struct {
			ID string `json:"decision_id"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("decision log line %q: %v", line, err)
		}
		logged[rec.ID] = true
	}
	missing := 0
	for _, id := range ids {
		if !logged[id] {
			missing++
		}
	}
	if missing > 0 {
		t.Errorf("%d of %d answered decisions are missing from the decision log", missing, len(ids))
	}
}
