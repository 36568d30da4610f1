package decisionlog_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// collector is an in-process log collector: it takes gzip'd JSON arrays,
// as Fluent Bit's http input or Vector's http_server would, and keeps
// every batch. answer, when set, chooses each request's status (n counts
// requests from 0); a status of 0 means 200.
type collector struct {
	*httptest.Server
	t      *testing.T
	answer func(n int, w http.ResponseWriter, r *http.Request) int

	mu       sync.Mutex
	requests int
	batches  [][]json.RawMessage // accepted batches, in arrival order
	headers  []http.Header       // of every request
	arrived  chan struct{}       // a request arrived (buffered, never blocks)
}

func newCollector(t *testing.T, answer func(n int, w http.ResponseWriter, r *http.Request) int) *collector {
	c := &collector{t: t, answer: answer, arrived: make(chan struct{}, 10000)}
	c.Server = httptest.NewServer(http.HandlerFunc(c.serve))
	t.Cleanup(c.Close)
	return c
}

func (c *collector) serve(w http.ResponseWriter, r *http.Request) {
	raw, err := io.ReadAll(r.Body)
	c.mu.Lock()
	n := c.requests
	c.requests++
	c.headers = append(c.headers, r.Header.Clone())
	c.mu.Unlock()
	defer func() {
		select {
		case c.arrived <- struct{}{}:
		default:
		}
	}()
	if err != nil {
		c.t.Errorf("collector: reading the body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	status := http.StatusOK
	if c.answer != nil {
		if s := c.answer(n, w, r); s != 0 {
			status = s
		}
	}
	if status/100 != 2 {
		w.WriteHeader(status)
		return
	}
	batch, err := decodeBatch(r.Header, raw)
	if err != nil {
		c.t.Errorf("collector: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	c.batches = append(c.batches, batch)
	c.mu.Unlock()
	w.WriteHeader(status)
}

// decodeBatch checks a batch's headers and returns its records.
func decodeBatch(h http.Header, body []byte) ([]json.RawMessage, error) {
	if ct, ce := h.Get("Content-Type"), h.Get("Content-Encoding"); ct != "application/json" || ce != "gzip" {
		return nil, fmt.Errorf("Content-Type %q, Content-Encoding %q", ct, ce)
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("not gzip: %w", err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("bad gzip: %w", err)
	}
	var batch []json.RawMessage
	if err := json.Unmarshal(plain, &batch); err != nil {
		return nil, fmt.Errorf("not a JSON array: %w: %.200s", err, plain)
	}
	return batch, nil
}

// snapshot returns the accepted batches and the request count.
func (c *collector) snapshot() (batches [][]json.RawMessage, requests int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.batches), c.requests
}

// ids returns the decision IDs of every accepted record, in order.
func (c *collector) ids() []string {
	batches, _ := c.snapshot()
	var ids []string
	for _, b := range batches {
		for _, rec := range b {
			var r struct {
				DecisionID string `json:"decision_id"`
			}
			if err := json.Unmarshal(rec, &r); err != nil {
				c.t.Errorf("record %s: %v", rec, err)
			}
			ids = append(ids, r.DecisionID)
		}
	}
	return ids
}

// numbered returns n records with decision IDs r00000, r00001, ...
func numbered(from, n int) []decisionlog.Record {
	out := make([]decisionlog.Record, n)
	for i := range out {
		r := records()[i%4]
		r.DecisionID = fmt.Sprintf("r%05d", from+i)
		out[i] = r
	}
	return out
}

func idsOf(rs []decisionlog.Record) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.DecisionID
	}
	return ids
}

// eventually polls cond every millisecond until it holds, failing the test
// after d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// quickRetries are backoff settings for tests: no jitter, and an After
// that records each wait and ends it at once.
type quickRetries struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (q *quickRetries) after(d time.Duration) <-chan time.Time {
	q.mu.Lock()
	q.waits = append(q.waits, d)
	q.mu.Unlock()
	ch := make(chan time.Time, 1)
	ch <- time.Now()
	return ch
}

func (q *quickRetries) got() []time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.waits)
}

func newLogger(t *testing.T, opts decisionlog.Options) *decisionlog.Logger {
	t.Helper()
	l, err := decisionlog.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func logAll(t *testing.T, l *decisionlog.Logger, rs []decisionlog.Record) {
	t.Helper()
	for _, r := range rs {
		if !l.Log(r) {
			t.Fatalf("Log(%s) refused with room in the buffer", r.DecisionID)
		}
	}
}

// TestUploadSameRecordsAsTheFile: with both outputs on, every batch is a
// gzip'd JSON array whose elements are, byte for byte, the file's lines
// (one encoder, masks and all), in order.
func TestUploadSameRecordsAsTheFile(t *testing.T) {
	c := newCollector(t, nil)
	var file authztest.SyncBuffer
	l := newLogger(t, decisionlog.Options{Writer: &file, Mask: []string{"/input/subject/claims/email"},
		Upload: &decisionlog.UploadOptions{URL: c.URL, MaxBatchRecords: 3, Interval: time.Hour}})
	rs := numbered(0, 7)
	for i := range rs {
		rs[i].Input = inputDoc(t)
	}
	stop := authztest.Start(t, l.Run)
	logAll(t, l, rs)
	eventually(t, 5*time.Second, "two full batches", func() bool { b, _ := c.snapshot(); return len(b) == 2 })
	if err := stop(); err != nil { // and the last, partial batch leaves
		t.Fatal(err)
	}
	batches, _ := c.snapshot()
	var sizes []int
	var got []string
	for _, b := range batches {
		sizes = append(sizes, len(b))
		for _, rec := range b {
			got = append(got, string(rec))
		}
	}
	want := strings.Split(strings.TrimSuffix(file.String(), "\n"), "\n")
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("uploaded records differ from the file's lines (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{3, 3, 1}, sizes); diff != "" {
		t.Errorf("batch sizes (-want +got):\n%s", diff)
	}
	if strings.Contains(strings.Join(got, ""), "alice@example.com") {
		t.Error("a masked field was uploaded")
	}
	st := l.Stats()
	if st.Upload == nil || st.Upload.Uploaded != 7 || st.Written != 7 || l.Dropped() != 0 {
		t.Errorf("stats %+v, upload %+v, dropped %d", st, st.Upload, l.Dropped())
	}
	if st.Upload.Duration.Count != 3 {
		t.Errorf("latency histogram counted %d requests, want 3", st.Upload.Duration.Count)
	}
}

// TestUploadTriggers: a batch leaves when it is full (records or bytes),
// without waiting for the interval, and a partial batch leaves once its
// oldest record has waited the interval; never a batch over the limits.
func TestUploadTriggers(t *testing.T) {
	t.Run("records", func(t *testing.T) {
		c := newCollector(t, nil)
		l := newLogger(t, decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: c.URL, MaxBatchRecords: 5, Interval: time.Hour}})
		authztest.Start(t, l.Run)
		logAll(t, l, numbered(0, 12))
		eventually(t, 5*time.Second, "two full batches", func() bool { b, _ := c.snapshot(); return len(b) == 2 })
		batches, _ := c.snapshot()
		if len(batches[0]) != 5 || len(batches[1]) != 5 {
			t.Errorf("batches of %d and %d records, want 5 and 5", len(batches[0]), len(batches[1]))
		}
	})
	t.Run("bytes", func(t *testing.T) {
		c := newCollector(t, nil)
		rs := numbered(0, 10)
		for i := range rs {
			id := rs[i].DecisionID
			rs[i] = records()[0] // every record the same length
			rs[i].DecisionID = id
		}
		one := len(decisionlog.AppendRecord(nil, &rs[0]))
		maxBytes := 3*one + 10 // three records and the brackets, not four
		l := newLogger(t, decisionlog.Options{MaxRecordBytes: one + 8,
			Upload: &decisionlog.UploadOptions{URL: c.URL, MaxBatchBytes: maxBytes, Interval: time.Hour}})
		stop := authztest.Start(t, l.Run)
		logAll(t, l, rs)
		eventually(t, 5*time.Second, "full batches", func() bool { b, _ := c.snapshot(); return len(b) >= 3 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		batches, _ := c.snapshot()
		total := 0
		for _, b := range batches {
			size := 1
			for _, rec := range b {
				size += len(rec) + 1
			}
			if size > maxBytes {
				t.Errorf("a batch of %d bytes, over %d", size, maxBytes)
			}
			total += len(b)
		}
		if total != 10 || len(batches) != 4 {
			t.Errorf("%d records in %d batches, want 10 in 4", total, len(batches))
		}
	})
	t.Run("interval", func(t *testing.T) {
		c := newCollector(t, nil)
		const interval = 30 * time.Millisecond
		l := newLogger(t, decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: c.URL, Interval: interval}})
		authztest.Start(t, l.Run)
		start := time.Now()
		logAll(t, l, numbered(0, 2))
		eventually(t, 5*time.Second, "a batch after the interval", func() bool { b, _ := c.snapshot(); return len(b) == 1 })
		if el := time.Since(start); el < interval {
			t.Errorf("a partial batch left after %v, before the interval %v", el, interval)
		}
		if b, _ := c.snapshot(); len(b[0]) != 2 {
			t.Errorf("batch of %d records, want 2", len(b[0]))
		}
		// The next record starts a new wait.
		logAll(t, l, numbered(2, 1))
		eventually(t, 5*time.Second, "a second batch", func() bool { b, _ := c.snapshot(); return len(b) == 2 })
	})
}

// TestUploadTriggersOnAFakeClock runs the interval trigger and the
// backoff on synctest's clock: a partial batch waits exactly the interval,
// failed attempts wait the doubling backoff, and Run leaves no goroutine
// behind (synctest.Test fails on any left blocked).
func TestUploadTriggersOnAFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		var mu sync.Mutex
		var at []time.Duration // when each request arrived, since start
		fails := 2
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, r.Body)
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Since(start))
			status := http.StatusOK
			if fails > 0 {
				fails--
				status = http.StatusServiceUnavailable
			}
			return &http.Response{StatusCode: status, Status: http.StatusText(status), Body: http.NoBody, Request: r}, nil
		})}
		l := newLogger(t, decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: "https://collector.test/in",
			Client: client, Interval: 5 * time.Second, MinBackoff: time.Second, MaxBackoff: time.Minute, Jitter: -1}})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- l.Run(ctx) }()
		logAll(t, l, numbered(0, 3))
		time.Sleep(time.Minute)
		synctest.Wait()
		mu.Lock()
		got := slices.Clone(at)
		mu.Unlock()
		// Sent after 5 s; refused; again 1 s later; refused; 2 s later.
		want := []time.Duration{5 * time.Second, 6 * time.Second, 8 * time.Second}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("request times (-want +got):\n%s", diff)
		}
		if l.Uploaded() != 3 || l.Dropped() != 0 {
			t.Errorf("uploaded %d, dropped %d", l.Uploaded(), l.Dropped())
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestUploadRecovers: a collector that fails (500, then a 429 with
// Retry-After, then a refused connection would look the same) and then
// recovers loses nothing the buffer could hold; the failed attempts were
// retried after doubling waits, lengthened by Retry-After within bounds.
func TestUploadRecovers(t *testing.T) {
	c := newCollector(t, func(n int, w http.ResponseWriter, _ *http.Request) int {
		switch {
		case n < 3:
			return http.StatusInternalServerError
		case n == 3:
			w.Header().Set("Retry-After", "2")
			return http.StatusTooManyRequests
		case n == 4:
			w.Header().Set("Retry-After", "3600") // bounded by MaxBackoff
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	var q quickRetries
	l := newLogger(t, decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: c.URL, Interval: time.Millisecond,
		MinBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, Jitter: -1, After: q.after}})
	stop := authztest.Start(t, l.Run)
	first := numbered(0, 5)
	logAll(t, l, first)
	eventually(t, 5*time.Second, "the collector recovering", func() bool { return l.Uploaded() >= 5 })
	more := numbered(5, 5)
	logAll(t, l, more)
	eventually(t, 5*time.Second, "the rest delivered", func() bool { return l.Uploaded() == 10 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idsOf(append(first, more...)), c.ids()); diff != "" {
		t.Errorf("delivered records (-want +got):\n%s", diff)
	}
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		2 * time.Second, // Retry-After 2 beats the backoff's 800ms
		5 * time.Second, // Retry-After 3600 capped at MaxBackoff
	}
	if diff := cmp.Diff(want, q.got()); diff != "" {
		t.Errorf("waits between attempts (-want +got):\n%s", diff)
	}
	if l.Dropped() != 0 {
		t.Errorf("dropped %d", l.Dropped())
	}
}

// TestUploadRefusedOrExhausted: a 4xx (but 429) is not retried and its
// batch is counted as upload_failed, as is a batch whose attempts run out
// against 5xx; a redirect is an answer, not followed.
func TestUploadRefusedOrExhausted(t *testing.T) {
	redirected := newCollector(t, nil)
	tests := []struct {
		name         string
		status       int
		wantRequests int
	}{
		{name: "bad request", status: http.StatusBadRequest, wantRequests: 1},
		{name: "unauthorized", status: http.StatusUnauthorized, wantRequests: 1},
		{name: "too large", status: http.StatusRequestEntityTooLarge, wantRequests: 1},
		{name: "redirect", status: http.StatusFound, wantRequests: 1},
		{name: "server error, attempts run out", status: http.StatusBadGateway, wantRequests: 3},
		{name: "too many requests, attempts run out", status: http.StatusTooManyRequests, wantRequests: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCollector(t, func(_ int, w http.ResponseWriter, _ *http.Request) int {
				if tc.status == http.StatusFound {
					w.Header().Set("Location", redirected.URL)
				}
				return tc.status
			})
			var q quickRetries
			var logs authztest.SyncBuffer
			// One batch of the four: it leaves when full, whenever the
			// writer hands the records over.
			l := newLogger(t, decisionlog.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				Upload: &decisionlog.UploadOptions{URL: c.URL, Interval: time.Hour, MaxBatchRecords: 4, MaxAttempts: 3, After: q.after}})
			stop := authztest.Start(t, l.Run)
			logAll(t, l, numbered(0, 4))
			eventually(t, 5*time.Second, "the batch given up", func() bool { return l.DroppedFor(decisionlog.DropUploadFailed) == 4 })
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			if _, n := c.snapshot(); n != tc.wantRequests {
				t.Errorf("%d requests, want %d", n, tc.wantRequests)
			}
			if _, n := redirected.snapshot(); n != 0 {
				t.Errorf("the redirect was followed")
			}
			if l.Uploaded() != 0 || l.Dropped() != 4 {
				t.Errorf("uploaded %d, dropped %d", l.Uploaded(), l.Dropped())
			}
			if !strings.Contains(logs.String(), "decision log batch dropped") {
				t.Errorf("no log of the dropped batch:\n%s", logs.String())
			}
		})
	}
}

// TestUploadTooLarge: a record that cannot fit in a batch on its own is
// dropped as too_large; the others are delivered.
func TestUploadTooLarge(t *testing.T) {
	c := newCollector(t, nil)
	var file authztest.SyncBuffer
	l := newLogger(t, decisionlog.Options{Writer: &file, MaxRecordBytes: 1024,
		Upload: &decisionlog.UploadOptions{URL: c.URL, MaxBatchBytes: 2048}})
	rs := numbered(0, 3)
	// Over the record cap even without its input: only reasons are left.
	rs[1].Reasons = []string{strings.Repeat("r", 4096)}
	logAll(t, l, rs)
	if err := authztest.Start(t, l.Run)(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"r00000", "r00002"}, c.ids()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if got := l.DroppedFor(decisionlog.DropTooLarge); got != 1 {
		t.Errorf("too_large = %d, want 1", got)
	}
	if l.Written() != 3 {
		t.Errorf("the file has %d records, want all 3", l.Written())
	}
}

// TestUploadStalledCollector: a collector that never answers. Log calls
// return at once all along; the file output keeps up; the upload buffer
// fills, and the records it cannot hold are dropped as buffer_full; at the
// flush deadline the batch in flight and the rest are upload_failed, and
// Run returns. Every record is accounted for.
func TestUploadStalledCollector(t *testing.T) {
	release := make(chan struct{})
	c := newCollector(t, func(_ int, _ http.ResponseWriter, r *http.Request) int {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return http.StatusServiceUnavailable
	})
	t.Cleanup(func() { close(release) }) // before the server's Close (cleanups run last first)
	var file authztest.SyncBuffer
	const buffer = 20
	l := newLogger(t, decisionlog.Options{Writer: &file, Upload: &decisionlog.UploadOptions{URL: c.URL,
		MaxBatchRecords: 5, MaxBufferRecords: buffer, Interval: time.Millisecond},
		FlushDeadline: func() time.Time { return time.Now().Add(200 * time.Millisecond) }})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(cancel)

	const n = 2000
	rs := numbered(0, n)
	var slowest time.Duration
	start := time.Now()
	for i, r := range rs {
		t0 := time.Now()
		l.Log(r)
		slowest = max(slowest, time.Since(t0))
		if i == 10 { // let the first batch reach the stuck collector
			eventually(t, 5*time.Second, "the first request", func() bool { _, n := c.snapshot(); return n > 0 })
		}
	}
	if el := time.Since(start); el > time.Second || slowest > 100*time.Millisecond {
		t.Fatalf("Log blocked on a stuck collector: %d calls took %v, the slowest %v", n, el, slowest)
	}
	eventually(t, 10*time.Second, "the file output keeping up", func() bool { return l.Written() == n })
	if got := l.DroppedFor(decisionlog.DropBufferFull); got != n-buffer {
		t.Errorf("buffer_full = %d, want %d (all but the %d the upload buffer holds)", got, n-buffer, buffer)
	}

	stopped := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return at the flush deadline")
	}
	if el := time.Since(stopped); el > 2*time.Second {
		t.Errorf("Run took %v after its context ended, with a 200ms flush deadline", el)
	}
	if got := l.DroppedFor(decisionlog.DropUploadFailed); got != buffer {
		t.Errorf("upload_failed = %d, want the %d buffered", got, buffer)
	}
	if l.Uploaded() != 0 || l.Dropped() != n {
		t.Errorf("uploaded %d, dropped %d; want 0 and %d", l.Uploaded(), l.Dropped(), n)
	}
}

// TestUploadFlushOnShutdown: records logged just before Run's context ends
// reach the collector (the interval is far off), even through a failure
// during the flush, well before the flush deadline.
func TestUploadFlushOnShutdown(t *testing.T) {
	c := newCollector(t, func(n int, _ http.ResponseWriter, _ *http.Request) int {
		if n == 1 {
			return http.StatusBadGateway
		}
		return 0
	})
	l := newLogger(t, decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: c.URL, Interval: time.Hour,
		MaxBatchRecords: 40, MinBackoff: 10 * time.Millisecond},
		FlushDeadline: func() time.Time { return time.Now().Add(10 * time.Second) }})
	stop := authztest.Start(t, l.Run)
	rs := numbered(0, 100)
	logAll(t, l, rs)
	stopped := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(stopped); el > 5*time.Second {
		t.Errorf("the flush took %v", el)
	}
	if diff := cmp.Diff(idsOf(rs), c.ids()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	// Full batches, the flush waiting for the last records to be handed
	// over; one request was refused and retried.
	batches, n := c.snapshot()
	var sizes []int
	for _, b := range batches {
		sizes = append(sizes, len(b))
	}
	if diff := cmp.Diff([]int{40, 40, 20}, sizes); diff != "" || n != 4 {
		t.Errorf("%d requests; batch sizes (-want +got):\n%s", n, diff)
	}
}

// TestUploadHeaders: configured headers reach the collector, HeaderFunc's
// over them (a failing HeaderFunc fails the attempt, retried), and no
// header value ever reaches the log.
func TestUploadHeaders(t *testing.T) {
	const secret = "s3cr3t-t0ken"
	c := newCollector(t, func(int, http.ResponseWriter, *http.Request) int { return http.StatusServiceUnavailable })
	var logs authztest.SyncBuffer
	calls := 0
	var q quickRetries
	l := newLogger(t, decisionlog.Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Upload: &decisionlog.UploadOptions{URL: c.URL, Interval: time.Millisecond, MaxAttempts: 3, After: q.after,
			Header: http.Header{"Authorization": {"Bearer " + secret}, "X-Tenant": {"a"}},
			HeaderFunc: func() (http.Header, error) {
				calls++ // Run's goroutine only
				if calls == 1 {
					return nil, errors.New("reading the token file: no such file")
				}
				return http.Header{"X-Tenant": {"b-" + secret}}, nil
			}}})
	stop := authztest.Start(t, l.Run)
	logAll(t, l, numbered(0, 1))
	eventually(t, 5*time.Second, "the batch given up", func() bool { return l.DroppedFor(decisionlog.DropUploadFailed) == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	headers := slices.Clone(c.headers)
	c.mu.Unlock()
	if len(headers) != 2 {
		t.Fatalf("%d requests, want 2 (the first attempt failed before sending)", len(headers))
	}
	for _, h := range headers {
		if h.Get("Authorization") != "Bearer "+secret || h.Get("X-Tenant") != "b-"+secret ||
			h.Get("Content-Encoding") != "gzip" || h.Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", h)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("a header value reached the log:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "reading the token file") {
		t.Errorf("the HeaderFunc failure is not logged:\n%s", logs.String())
	}
}

func TestUploadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts decisionlog.Options
		want string // in the error; "" for none
	}{
		{name: "upload without a file", opts: decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: "http://c:8080/in"}}},
		{name: "no URL", opts: decisionlog.Options{Upload: &decisionlog.UploadOptions{}}, want: "absolute http(s) URL"},
		{name: "relative URL", opts: decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: "/in"}}, want: "absolute http(s) URL"},
		{name: "negative interval", opts: decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: "http://c/in", Interval: -1}}, want: "negative"},
		{name: "batch below the record cap", opts: decisionlog.Options{MaxRecordBytes: 4096,
			Upload: &decisionlog.UploadOptions{URL: "http://c/in", MaxBatchBytes: 1024}}, want: "below MaxRecordBytes"},
		{name: "batch below the default record cap", opts: decisionlog.Options{
			Upload: &decisionlog.UploadOptions{URL: "http://c/in", MaxBatchBytes: 1024}}, want: "below MaxRecordBytes"},
		{name: "buffer below a batch", opts: decisionlog.Options{
			Upload: &decisionlog.UploadOptions{URL: "http://c/in", MaxBufferRecords: 10}}, want: "MaxBufferRecords (10) is below MaxBatchRecords"},
		{name: "buffer bytes below a batch", opts: decisionlog.Options{
			Upload: &decisionlog.UploadOptions{URL: "http://c/in", MaxBatchBytes: 32 << 20}}, want: "MaxBufferBytes"},
		{name: "no output", opts: decisionlog.Options{}, want: "Writer or Upload is required"},
		{name: "CAs beside a client", opts: decisionlog.Options{Upload: &decisionlog.UploadOptions{URL: "https://c/in",
			Client: http.DefaultClient, RootCAs: x509.NewCertPool}}, want: "RootCAs are for the Logger's own client"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decisionlog.New(tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, decisionlog.ErrOptions) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want ErrOptions containing %q", err, tc.want)
			}
		})
	}
}

// TestUploadEveryRecordWithinTheCap: with max_batch_bytes equal to
// max_record_bytes, as the option's own error asks for at the least, a
// record of the cap's size, or a byte or two under it, kept its input and
// then did not fit a batch (a batch is a JSON array: the record and two
// brackets), so it never reached the collector (too_large): a client
// sizing its request kept its decision out of the collector's log. Every
// record within the cap now reaches the collector, whole or without its
// input, as the file gets it.
func TestUploadEveryRecordWithinTheCap(t *testing.T) {
	const capBytes = 2048
	base := records()[0]
	base.DecisionID = "size0000"
	withPad := func(n int) decisionlog.Record {
		r := base
		r.Input = ast.MustInterfaceToValue(map[string]any{"resource": map[string]any{"pad": strings.Repeat("p", n)}})
		return r
	}
	var rs []decisionlog.Record
	for _, size := range []int{capBytes - 3, capBytes - 2, capBytes - 1, capBytes} {
		r := withPad(size - len(decisionlog.AppendRecord(nil, new(withPad(0)))))
		r.DecisionID = fmt.Sprintf("size%04d", size)
		if n := len(decisionlog.AppendRecord(nil, &r)); n != size {
			t.Fatalf("record of %d bytes, want %d", n, size)
		}
		rs = append(rs, r)
	}
	c := newCollector(t, nil)
	var file authztest.SyncBuffer
	l := newLogger(t, decisionlog.Options{Writer: &file, MaxRecordBytes: capBytes,
		Upload: &decisionlog.UploadOptions{URL: c.URL, MaxBatchBytes: capBytes}})
	logAll(t, l, rs)
	if err := authztest.Start(t, l.Run)(); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(idsOf(rs), c.ids()); diff != "" {
		t.Errorf("delivered (-want +got):\n%s", diff)
	}
	if got := l.DroppedFor(decisionlog.DropTooLarge); got != 0 {
		t.Errorf("too_large = %d, want 0", got)
	}
	batches, _ := c.snapshot()
	var lines []string
	for _, b := range batches {
		for _, rec := range b {
			lines = append(lines, string(rec)+"\n")
		}
	}
	if got := strings.Join(lines, ""); got != file.String() {
		t.Errorf("the collector's records are not the file's:\n%.300s\nfile:\n%.300s", got, file.String())
	}
}
