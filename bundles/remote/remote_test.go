package remote_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/bundles/remote"
)

const wait = 10 * time.Second

// server is a bundle server whose answers the test controls.
type server struct {
	mu      sync.Mutex
	body    []byte
	status  int           // when non-zero, answer this status instead
	delay   time.Duration // sleep before answering
	noETag  bool
	got200  atomic.Int64
	got304  atomic.Int64
	gotReqs atomic.Int64
	*httptest.Server
}

func newServer(t *testing.T, body []byte) *server {
	s := &server{body: body}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *server) set(f func(s *server)) { s.mu.Lock(); f(s); s.mu.Unlock() }

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	s.gotReqs.Add(1)
	s.mu.Lock()
	body, status, delay, noETag := s.body, s.status, s.delay, s.noETag
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		http.Error(w, "boom", status)
		return
	}
	sum := sha256.Sum256(body)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	if !noETag {
		if r.Header.Get("If-None-Match") == etag {
			s.got304.Add(1)
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", etag)
	}
	s.got200.Add(1)
	w.Write(body)
}

// stepper replaces the Poller's timer: every wait is reported on waits,
// and the next poll happens only when the test calls next.
type stepper struct {
	waits chan time.Duration
	tick  chan time.Time
}

func newStepper() *stepper {
	return &stepper{waits: make(chan time.Duration, 100), tick: make(chan time.Time, 1)}
}

func (s *stepper) After(d time.Duration) <-chan time.Time { s.waits <- d; return s.tick }

// polled waits until the current poll has finished and returns the wait
// the Poller chose before the next one.
func (s *stepper) polled(t *testing.T) time.Duration {
	t.Helper()
	select {
	case d := <-s.waits:
		return d
	case <-time.After(wait):
		t.Fatal("poll did not finish")
		return 0
	}
}

func (s *stepper) next() { s.tick <- time.Now() }

// startPoller builds a Poller with opts whose clock is a new stepper and
// runs it (see bundletest.Run) with a new sink that buffers n snapshots.
func startPoller(t *testing.T, opts remote.Options, n int) (*remote.Poller, *stepper, *bundletest.Sink) {
	t.Helper()
	st := newStepper()
	opts.After = st.After
	p, err := remote.New(opts)
	bundletest.Must(t, err)
	sink := bundletest.NewSink(n)
	bundletest.Run(t, p, sink)
	return p, st, sink
}

func policy(v int) map[string]string {
	return map[string]string{"authz/authz.rego": bundletest.Policy("authz", v)}
}

func TestPollerETagAndBackoff(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL + "/b.tar.gz?sig=secret", Interval: time.Minute, Jitter: -1,
		MinBackoff: time.Second, MaxBackoff: 4 * time.Second}, 8)

	if d := st.polled(t); d != time.Minute {
		t.Errorf("wait after success = %s, want 1m", d)
	}
	if s := sink.Next(t, wait); s.Revision != "rev-1" || s.Origin != srv.URL+"/b.tar.gz" {
		t.Fatalf("snapshot %s from %q (origin must drop the query)", s.Revision, s.Origin)
	}
	<-p.Initialized()

	// Unchanged: 304, no download, no reload.
	st.next()
	st.polled(t)
	if srv.got304.Load() != 1 || srv.got200.Load() != 1 || sink.Calls() != 1 {
		t.Fatalf("200s=%d 304s=%d loads=%d, want 1,1,1", srv.got200.Load(), srv.got304.Load(), sink.Calls())
	}

	// 500s back off exponentially up to the cap; the old bundle keeps serving.
	srv.set(func(s *server) { s.status = http.StatusInternalServerError })
	var waits []time.Duration
	for range 4 {
		st.next()
		waits = append(waits, st.polled(t))
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}; !slices.Equal(waits, want) {
		t.Errorf("backoff waits = %v, want %v", waits, want)
	}
	status := p.Status()
	if !strings.Contains(status.LastError, "500") || status.Revision != "rev-1" || strings.Contains(status.LastError, "secret") {
		t.Errorf("status = %+v", status)
	}

	// Recovers with a new bundle; interval back to normal.
	srv.set(func(s *server) { s.status = 0; s.body = bundletest.Tarball(t, policy(2), nil, "rev-2", nil) })
	st.next()
	if d := st.polled(t); d != time.Minute {
		t.Errorf("wait after recovery = %s, want 1m", d)
	}
	if s := sink.Next(t, wait); s.Revision != "rev-2" {
		t.Fatalf("revision %s, want rev-2", s.Revision)
	}
	// Four polls failed the same way: one distinct failure.
	if status := p.Status(); status.LastError != "" || status.Reloads != 2 || status.ReloadErrors != 1 {
		t.Errorf("status = %+v", status)
	}
}

// TestPollerFailingServerLogsOnce: a server that keeps failing the same
// way is logged and counted once, however many polls fail; a different
// failure is a new one; the first good poll logs one recovery and clears
// the status.
func TestPollerFailingServerLogsOnce(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	var logs bundletest.Logs
	var observed atomic.Int64
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, Logger: logs.Logger(),
		Observer: bundles.ObserverFunc(func(string, time.Duration, error) { observed.Add(1) })}, 4)
	st.polled(t)
	sink.Next(t, wait)

	poll := func(n int) {
		t.Helper()
		for range n {
			st.next()
			st.polled(t)
		}
	}
	srv.set(func(s *server) { s.status = http.StatusBadGateway })
	before := p.Status().LastAttempt
	poll(8)
	status := p.Status()
	if n := logs.Count("policy bundle fetch failed"); n != 1 || status.ReloadErrors != 1 || observed.Load() != 2 {
		t.Errorf("fetch failed lines, ReloadErrors, observed = %d, %d, %d; want 1, 1, 2 after 8 failed polls",
			n, status.ReloadErrors, observed.Load())
	}
	if !status.LastAttempt.After(before) || !strings.Contains(status.LastError, "502") {
		t.Errorf("status = %+v, want the 502 and a later LastAttempt", status)
	}

	srv.set(func(s *server) { s.status = http.StatusServiceUnavailable })
	poll(3)
	if n := logs.Count("policy bundle fetch failed"); n != 2 || p.Status().ReloadErrors != 2 {
		t.Errorf("after another failure: fetch failed lines, ReloadErrors = %d, %d; want 2, 2", n, p.Status().ReloadErrors)
	}

	srv.set(func(s *server) { s.status = 0 })
	poll(3) // 304s: nothing changed on the server
	status = p.Status()
	if n := logs.Count("policy recovered"); n != 1 || status.LastError != "" || sink.Calls() != 1 {
		t.Errorf("recovered lines = %d, status %+v, sink calls %d; want 1, no error, 1 (the sink never saw an error)",
			n, status, sink.Calls())
	}
	if v, _ := logs.Attr("policy recovered", "revision"); v.String() != "rev-1" {
		t.Errorf("recovered line names revision %q, want rev-1", v)
	}
}

// TestPollerRefusedBundleReverted: a bundle the sink refuses is offered
// once however often it is polled; when the server goes back to the good
// bundle (a 304 for the ETag the Poller kept), the sink is given the good
// snapshot again, so that its own error clears, and one recovery is
// logged.
func TestPollerRefusedBundleReverted(t *testing.T) {
	good := bundletest.Tarball(t, policy(1), nil, "rev-1", nil)
	srv := newServer(t, good)
	var logs bundletest.Logs
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, Logger: logs.Logger()}, 4)
	st.polled(t)
	sink.Next(t, wait)

	bad := bundletest.Tarball(t, map[string]string{"authz/authz.rego": "package authz\n\ndefault allow := false\ndefault allow := true\n"}, nil, "rev-bad", nil)
	srv.set(func(s *server) { s.body = bad })
	for range 5 {
		st.next()
		st.polled(t)
	}
	status := p.Status()
	if sink.Calls() != 2 || logs.Count("policy reload failed") != 1 || status.ReloadErrors != 1 || status.Revision != "rev-1" {
		t.Errorf("sink calls %d, reload failed lines %d, status %+v; want 2, 1, one error, rev-1 serving",
			sink.Calls(), logs.Count("policy reload failed"), status)
	}

	srv.set(func(s *server) { s.body = good })
	st.next()
	st.polled(t)
	if s := sink.Next(t, wait); s.Revision != "rev-1" || srv.got304.Load() == 0 {
		t.Fatalf("sink given %s (304s: %d), want rev-1 again after a 304", s.Revision, srv.got304.Load())
	}
	status = p.Status()
	if status.LastError != "" || len(status.Errors) != 0 || logs.Count("policy recovered") != 1 || sink.Calls() != 3 {
		t.Errorf("status %+v, recovered lines %d, sink calls %d; want no error, 1, 3",
			status, logs.Count("policy recovered"), sink.Calls())
	}
	st.next()
	st.polled(t)
	if sink.Calls() != 3 || logs.Count("policy recovered") != 1 {
		t.Errorf("a further 304 called the sink (%d calls) or logged again", sink.Calls())
	}
}

func TestPollerFailures(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(s *server)
		opts    remote.Options
		wantErr error
		want    string
	}{
		{name: "timeout", setup: func(s *server) { s.delay = time.Second }, opts: remote.Options{Timeout: 50 * time.Millisecond}, wantErr: remote.ErrFetch, want: "deadline"},
		{name: "oversized body", opts: remote.Options{MaxBytes: 64}, wantErr: bundles.ErrTooLarge, want: "64 bytes"},
		{name: "too many files", opts: remote.Options{Limits: bundles.Limits{MaxFiles: 1}}, wantErr: bundles.ErrTooLarge, want: "more than 1 files"},
		{name: "unpacks too large", opts: remote.Options{Limits: bundles.Limits{MaxUnpackedBytes: 20}}, wantErr: bundles.ErrTooLarge, want: "unpacks to more than 20 bytes"},
		// Said as a local bundle file that is not gzip'd is: a body too
		// short for a gzip header read "archive read failed: unexpected EOF".
		{name: "not a bundle", setup: func(s *server) { s.body = []byte("<html>") }, wantErr: bundles.ErrNotGzip, want: "its content is not gzip'd"},
		{name: "a page not gzip'd", setup: func(s *server) { s.body = []byte("<html><body>maintenance</body></html>") }, wantErr: bundles.ErrNotGzip, want: "its content is not gzip'd"},
		{name: "404", setup: func(s *server) { s.status = 404 }, wantErr: remote.ErrFetch, want: "404"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
			if tc.setup != nil {
				srv.set(tc.setup)
			}
			var lastErr atomic.Pointer[error]
			opts := tc.opts
			opts.URL = srv.URL
			opts.Observer = bundles.ObserverFunc(func(_ string, _ time.Duration, err error) { lastErr.Store(&err) })
			p, st, sink := startPoller(t, opts, 1)
			st.polled(t)
			e := lastErr.Load()
			if e == nil || !errors.Is(*e, tc.wantErr) {
				t.Fatalf("observed error %v, want %v", e, tc.wantErr)
			}
			if s := p.Status(); !strings.Contains(s.LastError, tc.want) || sink.Calls() != 0 {
				t.Fatalf("status = %+v, loads = %d", s, sink.Calls())
			}
			if err := p.Ready(); !errors.Is(err, bundles.ErrNotLoaded) {
				t.Fatalf("Ready = %v, want ErrNotLoaded", err)
			}
		})
	}
}

func TestPollerSignatures(t *testing.T) {
	key, other := bundletest.NewKey(t), bundletest.NewKey(t)
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", &key))
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, Verify: bundletest.VerifyWith(key.Public)}, 8)
	st.polled(t)
	if s := sink.Next(t, wait); s.Revision != "rev-1" {
		t.Fatalf("revision %s", s.Revision)
	}
	for name, bad := range map[string][]byte{
		"unsigned":  bundletest.Tarball(t, policy(2), nil, "rev-2", nil),
		"wrong key": bundletest.Tarball(t, policy(3), nil, "rev-3", &other),
	} {
		srv.set(func(s *server) { s.body = bad })
		st.next()
		st.polled(t)
		status := p.Status()
		if !strings.Contains(status.LastError, "signature") || status.Revision != "rev-1" || sink.Current().Revision != "rev-1" {
			t.Fatalf("%s: status = %+v, serving %s", name, status, sink.Current().Revision)
		}
	}
}

func TestPollerPersistedBundleServerDown(t *testing.T) {
	key := bundletest.NewKey(t)
	persist := t.TempDir()
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", &key))
	opts := remote.Options{URL: srv.URL + "/authz.tar.gz", PersistDir: persist, Verify: bundletest.VerifyWith(key.Public)}

	// First life: fetch and persist.
	{
		st := newStepper()
		o := opts
		o.After = st.After
		p, err := remote.New(o)
		bundletest.Must(t, err)
		sink := bundletest.NewSink(2)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- p.Run(ctx, sink) }()
		st.polled(t)
		sink.Next(t, wait)
		cancel()
		<-done
	}

	// Second life: the server is down; the persisted bundle serves.
	addr := srv.Listener.Addr().String()
	srv.Close()
	o := opts
	o.MaxAge = time.Hour
	p, st, sink := startPoller(t, o, 2)
	st.polled(t)
	if s := sink.Next(t, wait); s.Revision != "rev-1" {
		t.Fatalf("persisted revision %s", s.Revision)
	}
	status := p.Status()
	if status.LastError == "" || status.Revision != "rev-1" {
		t.Fatalf("status = %+v, want rev-1 and the fetch error", status)
	}
	// Freshness: the persisted bundle was confirmed moments ago, within
	// MaxAge: ready, though no poll has succeeded since the restart.
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready = %v, want ready on the persisted bundle's confirmation", err)
	}

	// The server comes back on the same address: the bundle is downloaded
	// whole (the persisted ETag is not sent), and, being the same, not
	// loaded again.
	var back *server
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot rebind %s: %v", addr, err)
	}
	back = &server{body: bundletest.Tarball(t, policy(1), nil, "rev-1", &key)}
	back.Server = httptest.NewUnstartedServer(http.HandlerFunc(back.serve))
	back.Listener.Close()
	back.Listener = l
	back.Start()
	t.Cleanup(back.Close)
	st.next()
	st.polled(t)
	if back.got304.Load() != 0 || back.got200.Load() != 1 || sink.Calls() != 1 {
		t.Fatalf("304s = %d, 200s = %d, loads = %d; want 0, 1, 1", back.got304.Load(), back.got200.Load(), sink.Calls())
	}
	if err := p.Ready(); err != nil {
		t.Fatalf("Ready = %v", err)
	}

	// A tampered persisted bundle is refused on the next start.
	files, _ := filepath.Glob(filepath.Join(persist, "*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("persisted files %v", files)
	}
	bundletest.WriteFile(t, files[0], bundletest.Tarball(t, policy(9), nil, "rev-9", nil))
	back.Close()
	p2, st2, sink2 := startPoller(t, o, 2)
	st2.polled(t)
	if sink2.Calls() != 0 || p2.Status().Revision != "" {
		t.Fatalf("tampered persisted bundle was loaded")
	}
}

// TestPollerPersistedETagNotTrusted: an unsigned persisted bundle replaced
// on disk serves only until the first poll, which downloads the server's
// bundle whole: the persisted ETag is not sent, so the server's 304 cannot
// vouch for what the file now holds.
func TestPollerPersistedETagNotTrusted(t *testing.T) {
	persist := t.TempDir()
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	opts := remote.Options{URL: srv.URL + "/authz.tar.gz", PersistDir: persist}
	{
		p, st, sink := startPoller(t, opts, 2)
		st.polled(t)
		if s := sink.Next(t, wait); s.Revision != "rev-1" || p.Status().Revision != "rev-1" {
			t.Fatalf("first life serves %s", s.Revision)
		}
	}
	files, _ := filepath.Glob(filepath.Join(persist, "*.tar.gz"))
	if len(files) != 1 {
		t.Fatalf("persisted files %v", files)
	}
	bundletest.WriteFile(t, files[0], bundletest.Tarball(t, policy(9), nil, "rev-evil", nil))

	_, st, sink := startPoller(t, opts, 4)
	st.polled(t)
	var got []string
	for sink.Calls() > int64(len(got)) {
		got = append(got, sink.Next(t, wait).Revision)
	}
	if len(got) == 0 || got[len(got)-1] != "rev-1" || srv.got304.Load() != 0 {
		t.Fatalf("after the first poll: revisions %v, 304s %d; want rev-1 last and no 304", got, srv.got304.Load())
	}
}

// TestPollerOPASignedBundle builds a bundle with the real `opa build
// --signing-key` and checks it verifies (and that the wrong key refuses it).
func TestPollerOPASignedBundle(t *testing.T) {
	opa := bundletest.OPABinary(t)
	key := bundletest.NewKey(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	bundletest.WriteFile(t, filepath.Join(src, "authz", "authz.rego"), []byte(bundletest.Policy("authz", 1)))
	bundletest.WriteFile(t, filepath.Join(src, "authz", "data.json"), []byte(`{"admins": ["alice"]}`))
	priv := filepath.Join(dir, "private.pem")
	bundletest.WriteFile(t, priv, key.Private)
	out := filepath.Join(dir, "bundle.tar.gz")
	cmd := exec.Command(opa, "build", "--bundle", ".", "--signing-key", priv, "--revision", "opa-built", "-o", out)
	cmd.Dir = src
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("opa build: %v\n%s", err, b)
	}
	raw, err := os.ReadFile(out)
	bundletest.Must(t, err)

	srv := newServer(t, raw)
	for _, tc := range []struct {
		name string
		key  []byte
		ok   bool
	}{
		{name: "right key", key: key.Public, ok: true},
		{name: "wrong key", key: bundletest.NewKey(t).Public},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, st, sink := startPoller(t, remote.Options{URL: srv.URL, Verify: bundletest.VerifyWith(tc.key)}, 1)
			st.polled(t)
			if !tc.ok {
				if sink.Calls() != 0 || !strings.Contains(p.Status().LastError, "signature") {
					t.Fatalf("status = %+v", p.Status())
				}
				return
			}
			s := sink.Next(t, wait)
			if s.Revision != "opa-built" || bundletest.ModuleSource(s, "authz/authz.rego") == "" || s.Data["authz"] == nil {
				t.Fatalf("snapshot %s, modules %v, data %v", s.Revision, bundletest.ModulePaths(s), s.Data)
			}
		})
	}
}

// TestPollerManyReloadsRace: 100 bundle changes delivered while readers
// read the current snapshot and status.
func TestPollerManyReloadsRace(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(0), nil, "", nil))
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL}, 200)
	st.polled(t)
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				if s := sink.Current(); s != nil && len(s.Modules) != 1 {
					t.Error("incomplete snapshot")
				}
				_ = p.Status()
				_ = p.Ready()
			}
		})
	}
	for i := 1; i <= 100; i++ {
		body := bundletest.Tarball(t, policy(i), nil, "", nil)
		srv.set(func(s *server) { s.body = body })
		st.next()
		st.polled(t)
	}
	cancel()
	wg.Wait()
	if got := p.Status().Reloads; got != 101 {
		t.Errorf("Reloads = %d, want 101", got)
	}
}

// TestPollerRunTwice: a second Run while one runs is refused with
// ErrRunning, without polling or touching the sink or the persisted
// files (two Runs shared the ETag and the persisted bundle's bookkeeping,
// unsynchronised); once the first has returned, Run may run again.
func TestPollerRunTwice(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(0), nil, "", nil))
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, PersistDir: t.TempDir()}, 10)
	st.polled(t)
	sink.Next(t, wait)
	second := bundletest.NewSink(10)
	// Cancelled, so that a second Run let through returns at once.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx, second); !errors.Is(err, remote.ErrRunning) {
		t.Fatalf("second Run = %v, want ErrRunning", err)
	}
	if got := srv.gotReqs.Load(); got != 1 {
		t.Errorf("server got %d requests, want 1 (the second Run polled)", got)
	}
	if second.Calls() != 0 {
		t.Errorf("the second Run's sink was called %d times", second.Calls())
	}
}

// TestPollerRunAgainAfterReturn: a Run that has returned does not block
// the next one.
func TestPollerRunAgainAfterReturn(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(0), nil, "", nil))
	p, err := remote.New(remote.Options{URL: srv.URL, After: newStepper().After})
	bundletest.Must(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Run(ctx, bundletest.NewSink(1)); err != nil {
		t.Fatalf("Run on a cancelled context = %v, want nil", err)
	}
	if err := p.Run(ctx, bundletest.NewSink(1)); err != nil {
		t.Errorf("Run after the first returned = %v, want nil", err)
	}
}

func TestNewOptions(t *testing.T) {
	bad := []remote.Options{
		{},
		{URL: "ftp://x/b.tar.gz"},
		{URL: "/relative"},
		{URL: "http://x", Interval: -1},
		{URL: "http://x", Verify: bundletest.VerifyWith([]byte("not pem"))},
		{URL: "http://x", Jitter: 1},
		{URL: "http://x", Jitter: math.Inf(1)},
		// NaN made every wait the longest duration there is: the Poller
		// polled once and never again, serving that bundle for good.
		{URL: "http://x", Jitter: math.NaN()},
	}
	for _, l := range bundletest.NegativeLimits() {
		bad = append(bad, remote.Options{URL: "http://x", Limits: l})
	}
	for _, o := range bad {
		if _, err := remote.New(o); !errors.Is(err, remote.ErrOptions) {
			t.Errorf("New(%+v) = %v, want ErrOptions", o, err)
		}
	}
}

// TestPollerRefusedBundlePolledAtInterval: a bundle refused for its
// content (it does not parse, or the sink refuses it) is polled for again
// at the interval, not with the backoff of a failing server: the fix of a
// bad publish is served one poll later. It waited up to five minutes.
func TestPollerRefusedBundlePolledAtInterval(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, Interval: time.Minute, Jitter: -1,
		MinBackoff: time.Second, MaxBackoff: time.Hour}, 8)
	st.polled(t)
	sink.Next(t, wait)
	for _, bad := range [][]byte{
		[]byte("not a bundle"), // does not read
		bundletest.Tarball(t, map[string]string{"authz/authz.rego": "package authz\n\ndefault allow := false\ndefault allow := true\n"}, nil, "rev-bad", nil), // the sink refuses it
	} {
		srv.set(func(s *server) { s.body = bad })
		for range 3 {
			st.next()
			if d := st.polled(t); d != time.Minute {
				t.Fatalf("wait after a refused bundle = %s, want the interval", d)
			}
		}
	}
	srv.set(func(s *server) { s.body = bundletest.Tarball(t, policy(2), nil, "rev-2", nil) })
	st.next()
	st.polled(t)
	if s := sink.Next(t, wait); s.Revision != "rev-2" || p.Status().LastError != "" {
		t.Fatalf("revision %s, status %+v; want the fix served", s.Revision, p.Status())
	}
}

// TestPollerStaleLogged: with MaxAge, the policy turning stale (not
// ready) is logged once, at Error, and its turning fresh again once; the
// readiness flipped silently.
func TestPollerStaleLogged(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	var logs bundletest.Logs
	p, st, sink := startPoller(t, remote.Options{URL: srv.URL, MaxAge: 300 * time.Millisecond, Logger: logs.Logger()}, 8)
	st.polled(t)
	sink.Next(t, wait)
	srv.set(func(s *server) { s.status = http.StatusInternalServerError })
	time.Sleep(350 * time.Millisecond)
	for range 3 {
		st.next()
		st.polled(t)
	}
	if n := logs.Count("policy stale"); n != 1 || !errors.Is(p.Ready(), bundles.ErrStale) {
		t.Fatalf("%d 'policy stale' lines (ready: %v), want 1", n, p.Ready())
	}
	srv.set(func(s *server) { s.status = 0 })
	st.next()
	st.polled(t)
	if n := logs.Count("policy fresh"); n != 1 || p.Ready() != nil {
		t.Errorf("%d 'policy fresh' lines (ready: %v), want 1", n, p.Ready())
	}
}

// TestPollerPersistedConfirmation: with MaxAge, the time a poll last
// confirmed the persisted bundle is kept with it, and after a restart
// with the server down it counts as a successful poll: ready while it is
// younger than MaxAge, stale after. A confirmation to come (a file not
// written by a Poller) confirms nothing.
func TestPollerPersistedConfirmation(t *testing.T) {
	persist := t.TempDir()
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	opts := remote.Options{URL: srv.URL + "/authz.tar.gz", PersistDir: persist, MaxAge: time.Hour}
	p, st, sink := startPoller(t, opts, 4)
	st.polled(t)
	sink.Next(t, wait)
	_ = p
	srv.Close()
	metas, _ := filepath.Glob(filepath.Join(persist, "*.json"))
	if len(metas) != 1 {
		t.Fatalf("persisted companions %v", metas)
	}
	raw, err := os.ReadFile(metas[0])
	bundletest.Must(t, err)
	var m map[string]any
	bundletest.Must(t, json.Unmarshal(raw, &m))
	for _, tc := range []struct {
		name      string
		confirmed time.Time
		stale     bool
	}{
		{"confirmed a minute ago", time.Now().Add(-time.Minute), false},
		{"confirmed two hours ago", time.Now().Add(-2 * time.Hour), true},
		{"confirmed in an hour", time.Now().Add(time.Hour), true},
	} {
		m["saved_at"], m["confirmed_at"] = tc.confirmed.Add(-time.Hour), tc.confirmed
		if tc.confirmed.After(time.Now()) {
			m["saved_at"] = tc.confirmed
		}
		b, err := json.Marshal(m)
		bundletest.Must(t, err)
		bundletest.WriteFile(t, metas[0], b)
		p, st, sink := startPoller(t, opts, 2)
		st.polled(t)
		sink.Next(t, wait)
		if err := p.Ready(); errors.Is(err, bundles.ErrStale) != tc.stale {
			t.Errorf("%s: Ready = %v, want stale %v", tc.name, err, tc.stale)
		}
	}
}

// TestPollerConfirmationPersisted: with MaxAge, a poll that finds the
// server still serving the persisted bundle (a 304) records when, once the
// recorded time is MaxAge/4 old.
func TestPollerConfirmationPersisted(t *testing.T) {
	persist := t.TempDir()
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	// MaxAge/4 (500ms) is well past a save on a loaded machine: a save
	// slower than it is confirmed at once, as it should be.
	_, st, sink := startPoller(t, remote.Options{URL: srv.URL, PersistDir: persist, MaxAge: 2 * time.Second}, 4)
	st.polled(t)
	sink.Next(t, wait)
	confirmed := func() time.Time {
		metas, _ := filepath.Glob(filepath.Join(persist, "*.json"))
		if len(metas) != 1 {
			t.Fatalf("persisted companions %v", metas)
		}
		raw, err := os.ReadFile(metas[0])
		bundletest.Must(t, err)
		var m struct {
			ConfirmedAt time.Time `json:"confirmed_at"`
		}
		bundletest.Must(t, json.Unmarshal(raw, &m))
		return m.ConfirmedAt
	}
	if c := confirmed(); !c.IsZero() {
		t.Fatalf("confirmed_at %s right after saving, want none yet", c)
	}
	time.Sleep(550 * time.Millisecond) // past MaxAge/4
	st.next()
	st.polled(t)
	if srv.got304.Load() != 1 || confirmed().IsZero() {
		t.Errorf("304s %d, confirmed_at %s; want the 304 recorded", srv.got304.Load(), confirmed())
	}
}

// TestPollerNoConfirmationAfterFailedPersist: when a new bundle cannot be
// persisted, no poll confirms the bundle persisted before it, which the
// server no longer serves. A confirmation was written onto it, and a
// restart served it as fresh.
func TestPollerNoConfirmationAfterFailedPersist(t *testing.T) {
	persist := t.TempDir()
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-A", nil))
	_, st, sink := startPoller(t, remote.Options{URL: srv.URL, PersistDir: persist, MaxAge: 200 * time.Millisecond}, 4)
	st.polled(t)
	sink.Next(t, wait)
	bundlesOnDisk, _ := filepath.Glob(filepath.Join(persist, "*.tar.gz"))
	if len(bundlesOnDisk) != 1 {
		t.Fatalf("persisted %v", bundlesOnDisk)
	}
	// The next bundle cannot be written: a directory stands in its place.
	bundletest.Must(t, os.Remove(bundlesOnDisk[0]))
	bundletest.Must(t, os.Mkdir(bundlesOnDisk[0], 0o700))
	srv.set(func(s *server) { s.body = bundletest.Tarball(t, policy(2), nil, "rev-B", nil) })
	time.Sleep(60 * time.Millisecond) // past MaxAge/4
	st.next()
	st.polled(t)
	sink.Next(t, wait)
	time.Sleep(60 * time.Millisecond)
	st.next()
	st.polled(t) // a 304 for rev-B
	metas, _ := filepath.Glob(filepath.Join(persist, "*.json"))
	for _, m := range metas {
		raw, err := os.ReadFile(m)
		bundletest.Must(t, err)
		if strings.Contains(string(raw), "confirmed_at") {
			t.Errorf("a confirmation was persisted beside a bundle the server no longer serves: %s", raw)
		}
	}
}

// TestPollerPersistedURLRedacted: the persisted bundle's companion names
// the bundle_url as logs do, without its password or query (a presigned
// URL's token), which it held in full on disk.
func TestPollerPersistedURLRedacted(t *testing.T) {
	srv := newServer(t, bundletest.Tarball(t, policy(1), nil, "rev-1", nil))
	persist := t.TempDir()
	u := strings.Replace(srv.URL, "http://", "http://user:hunter2@", 1) + "/authz.tar.gz?X-Amz-Signature=secret"
	_, st, sink := startPoller(t, remote.Options{URL: u, PersistDir: persist}, 2)
	st.polled(t)
	sink.Next(t, wait)
	files, _ := filepath.Glob(filepath.Join(persist, "*.json"))
	if len(files) != 1 {
		t.Fatalf("persisted companions %v", files)
	}
	raw, err := os.ReadFile(files[0])
	bundletest.Must(t, err)
	var m struct {
		URL string `json:"url"`
	}
	bundletest.Must(t, json.Unmarshal(raw, &m))
	want := srv.URL + "/authz.tar.gz"
	if m.URL != want || strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "secret") {
		t.Errorf("companion = %s, want url %q and no credential", raw, want)
	}

	// A companion an earlier release wrote, with the URL in full, is
	// rewritten redacted when its bundle is loaded at the next start
	// (the unchanged bundle is not persisted again).
	var full map[string]any
	bundletest.Must(t, json.Unmarshal(raw, &full))
	full["url"] = u
	raw, err = json.Marshal(full)
	bundletest.Must(t, err)
	bundletest.WriteFile(t, files[0], raw)
	p, st, _ := startPoller(t, remote.Options{URL: u, PersistDir: persist}, 2)
	<-p.Initialized()
	st.polled(t)
	raw, err = os.ReadFile(files[0])
	bundletest.Must(t, err)
	if strings.Contains(string(raw), "hunter2") || strings.Contains(string(raw), "secret") {
		t.Errorf("companion after a restart = %s, want no credential", raw)
	}
}
