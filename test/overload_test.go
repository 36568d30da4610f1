package test

import (
	"bytes"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestOverloadBoundsMemory floods verdict with 400 clients at once, each
// sending /v1/decide bodies of 64 KiB made of empty objects (an input of
// several megabytes once decoded), for five seconds. Requests beyond
// limits.max_concurrent_decisions wait, then get 503 overloaded; some are
// answered, the process stays alive, and its peak memory stays below what
// unbounded concurrency took (over 500 MiB for this load, past 4 GiB for
// a thousand clients).
func TestOverloadBoundsMemory(t *testing.T) {
	t.Parallel()
	_, p := startWithPolicies(t, "decision_log: off\nlimits:\n  max_concurrent_decisions: 4\n")
	body := `{"action":"orders:read","resource":{"a":[` + strings.Repeat(`{},`, 21000) + `{}]}}`
	if len(body) > 64<<10 {
		t.Fatalf("body of %d bytes is over the default limit", len(body))
	}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 400, MaxConnsPerHost: 400}}
	defer client.CloseIdleConnections()
	var ok, shed, other atomic.Int64
	stop := time.Now().Add(5 * time.Second)
	var wg sync.WaitGroup
	for range 400 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				resp, err := client.Post(p.Base+"/v1/decide", "application/json", bytes.NewReader([]byte(body)))
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					ok.Add(1)
				case http.StatusServiceUnavailable:
					shed.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	wg.Wait()
	hwm := peakRSS(t, p.cmd.Process.Pid)
	t.Logf("answered %d, shed %d, other %d; peak RSS %d MiB", ok.Load(), shed.Load(), other.Load(), hwm>>20)
	if ok.Load() == 0 || shed.Load() == 0 {
		t.Errorf("answered %d, shed %d: want some of each", ok.Load(), shed.Load())
	}
	if hwm > 384<<20 {
		t.Errorf("peak RSS %d MiB under the flood, want under 384 MiB (about 180 with four decisions at once; over 500 without the bound)", hwm>>20)
	}
	checkAlive(t, p)
}

// peakRSS is the peak resident memory (VmHWM) of process pid, in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc status")
	return 0
}
