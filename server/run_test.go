package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// start runs the server on 127.0.0.1:0 until the test ends and returns its
// address and a function that stops it and returns Run's error.
func start(t *testing.T, s *Server) (string, func() error) {
	t.Helper()
	addr, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	return addr.String(), authztest.Start(t, s.Run)
}

func TestRunServesAndShutsDown(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	addr, stop := start(t, f.srv)
	resp, err := http.Post("http://"+addr+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"allow":true`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Headers over the limit are refused by the http.Server.
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/health/live", nil)
	req.Header.Set("X-Big", strings.Repeat("a", DefaultMaxHeaderBytes+8192))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("oversized headers: %d, want 431", resp.StatusCode)
		}
		resp.Body.Close()
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting connections after shutdown")
	}
}

// gateEngine holds every decision until released, or until the
// decision's context ends, as the engine does; then it lingers (work a
// handler still does once cut off) and reports on returned that Decide
// has returned.
type gateEngine struct {
	Engine
	entered  chan struct{}
	release  chan struct{}
	linger   time.Duration
	returned chan struct{}
}

// newGateEngine is a gateEngine in front of e, holding nothing yet.
func newGateEngine(e Engine) *gateEngine {
	return &gateEngine{Engine: e, entered: make(chan struct{}, 1), release: make(chan struct{}), returned: make(chan struct{}, 1)}
}

func (e *gateEngine) Decide(ctx context.Context, req authz.Request) (authz.Decision, error) {
	defer func() {
		select {
		case e.returned <- struct{}{}:
		default:
		}
	}()
	e.entered <- struct{}{}
	select {
	case <-e.release:
	case <-ctx.Done():
		time.Sleep(e.linger)
	}
	return e.Engine.Decide(ctx, req)
}

// wantReturned fails t unless the gated Decide has returned.
func (e *gateEngine) wantReturned(t *testing.T) {
	t.Helper()
	select {
	case <-e.returned:
	default:
		t.Error("Run returned while a cut-off request's handler was still running")
	}
}

// eventuallyClosed waits until addr refuses connections, as a listener
// does once shutdown begins.
func eventuallyClosed(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("listener %s still open during shutdown", addr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	slow := newGateEngine(f.engine)
	s, err := New(Options{Engine: slow, Addr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := start(t, s)
	type result struct {
		code int
		body string
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-slow.entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown is waiting for the request; new connections are refused.
	eventuallyClosed(t, addr)
	select {
	case err := <-stopped:
		t.Fatalf("Run returned before the in-flight request finished: %v", err)
	default:
	}
	close(slow.release)
	r := <-got
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, `"allow":true`) {
		t.Fatalf("in-flight request: %+v", r)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestShutdownDeadline: a request still running when the shutdown timeout
// runs out is cancelled, and Run waits for its handler.
func TestShutdownDeadline(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	slow := newGateEngine(f.engine)
	slow.linger = 200 * time.Millisecond
	defer close(slow.release)
	s, err := New(Options{Engine: slow, Addr: "127.0.0.1:0", DecisionLog: f.log, Limits: Limits{ShutdownTimeout: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	addr, stop := start(t, s)
	go func() {
		resp, err := http.Post("http://"+addr+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-slow.entered
	if err := stop(); err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want a deadline error", err)
	}
	// The request cut off was cancelled, and its handler had logged the
	// deny by the time Run returned.
	slow.wantReturned(t)
	if recs := f.log.records(); len(recs) != 1 || recs[0].Allow {
		t.Errorf("decision log after Run: %+v, want the cut-off request's deny", recs)
	}
}

func TestMTLSPeerIsCaller(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	serverCert := f.ca.Issue(t, authztest.LeafOptions{CommonName: "verdict", DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	cfg, err := NewTLS("request")
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Set(serverCert.TLS, f.ca.Pool()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Engine: f.engine, Addr: "127.0.0.1:0", TLS: cfg, DecisionLog: f.log, ActionHeader: "X-Verdict-Action"})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := start(t, s)
	client := func(cert *authztest.Leaf) *http.Client {
		tc := &tls.Config{RootCAs: f.ca.Pool(), ServerName: "localhost"}
		if cert != nil {
			tc.Certificates = []tls.Certificate{cert.TLS}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
	}
	payments := f.ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	tests := []struct {
		name       string
		cert       *authztest.Leaf
		path       string
		body       string
		want       int
		wantReason string
	}{
		{name: "decide with peer certificate", cert: &payments, path: "/v1/decide", body: `{"action":"inventory:reserve"}`,
			want: 200, wantReason: `"allow":true,"reasons":["service payments may call inventory:reserve"]`},
		{name: "decide without certificate", path: "/v1/decide", body: `{"action":"inventory:reserve"}`,
			want: 200, wantReason: `and the caller is not authenticated"`},
		// On /v1/check the peer is the proxy: its certificate is never the
		// caller of the requests it forwards.
		{name: "check with peer certificate", cert: &payments, path: "/v1/check", want: 401,
			wantReason: `and the caller is not authenticated`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr+tc.path, strings.NewReader(tc.body))
			req.Header.Set("X-Verdict-Action", "inventory:reserve")
			req.Header.Set("Content-Type", "application/json")
			c := client(tc.cert)
			defer c.CloseIdleConnections()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want || !strings.Contains(string(b), tc.wantReason) {
				t.Fatalf("%d %s; want %d with %s", resp.StatusCode, b, tc.want, tc.wantReason)
			}
		})
	}
	if recs := f.log.records(); len(recs) == 0 || recs[0].CallerID != "spiffe://verdict.example/ns/shop/sa/payments" {
		t.Errorf("decision log caller = %+v", recs)
	}
}

// blockingWriter blocks every Write until released.
type blockingWriter struct{ release chan struct{} }

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	return len(p), nil
}

func TestDecisionLogDropsCounted(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	bw := &blockingWriter{release: make(chan struct{})}
	dl, err := decisionlog.New(decisionlog.Options{Writer: bw, Buffer: 2})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Engine: f.engine, Addr: "127.0.0.1:0", DecisionLog: dl})
	if err != nil {
		t.Fatal(err)
	}
	stopLog := authztest.Start(t, dl.Run)
	const n = 50
	startAt := time.Now()
	for range n {
		s.Handler().ServeHTTP(newRecorder(), decideRequest(t))
	}
	if el := time.Since(startAt); el > 5*time.Second {
		t.Fatalf("requests were slowed by the blocked decision log: %v", el)
	}
	if dl.Dropped() == 0 {
		t.Fatal("no drops counted with a blocked writer")
	}
	metrics := scrape(t, s)
	if !strings.Contains(metrics, `verdict_decision_log_dropped_total{reason="buffer_full"} `) ||
		strings.Contains(metrics, `verdict_decision_log_dropped_total{reason="buffer_full"} 0`+"\n") {
		t.Errorf("dropped metric not counting:\n%s", grep(metrics, "dropped"))
	}
	close(bw.release)
	if err := stopLog(); err != nil {
		t.Fatal(err)
	}
	if got := dl.Written() + dl.Dropped(); got != n {
		t.Errorf("written %d + dropped %d = %d, want %d", dl.Written(), dl.Dropped(), got, n)
	}
}

// stuckEngine ignores its context: its decisions end only when released,
// as a built-in function that ignores the evaluation timeout would.
type stuckEngine struct {
	Engine
	entered chan struct{}
	release chan struct{}
}

func (e *stuckEngine) Decide(ctx context.Context, req authz.Request) (authz.Decision, error) {
	e.entered <- struct{}{}
	<-e.release
	return e.Engine.Decide(ctx, req)
}

// TestShutdownHandlerGrace: a handler that ignores its cancelled context
// holds Run up to the server's grace after the shutdown timeout, no
// longer, on the HTTP listener and on ext_authz's.
func TestShutdownHandlerGrace(t *testing.T) {
	for _, front := range []string{"http", "ext_authz"} {
		t.Run(front, func(t *testing.T) {
			stuck := &stuckEngine{entered: make(chan struct{}, 1), release: make(chan struct{})}
			defer close(stuck.release)
			x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
				stuck.Engine = o.Engine
				o.Engine = stuck
				o.Limits.ShutdownTimeout = 50 * time.Millisecond
			}, grace: 200 * time.Millisecond})
			go func() {
				if front == "http" {
					resp, err := http.Post("http://"+x.srv.Addr().String()+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
					if err == nil {
						resp.Body.Close()
					}
					return
				}
				x.client.Check(context.Background(), checkRequest("GET", "/catalog", nil))
			}()
			<-stuck.entered
			start := time.Now()
			if err := x.stop(); err == nil {
				t.Error("Run = nil, want the in-flight request cut off")
			}
			if took := time.Since(start); took > 3*time.Second {
				t.Errorf("Run took %v with a stuck handler, want about the shutdown timeout and the grace", took)
			}
		})
	}
}

// TestHandlerCountClosed: once Run waits for the cut-off handlers, a
// request whose handler had not started is answered 503 without running
// it, so that no decision starts after the wait.
func TestHandlerCountClosed(t *testing.T) {
	var c handlerCount
	ran := 0
	h := c.track(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran++ }))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
	if !c.wait(time.Millisecond) || ran != 1 {
		t.Fatalf("wait with no handler running: ran %d", ran)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	if w.Code != http.StatusServiceUnavailable || ran != 1 {
		t.Errorf("after wait: %d, handler ran %d times; want 503 and not run", w.Code, ran)
	}
}

// TestShutdownWaitsForResetStreams: Run waits for the handler of an
// HTTP/2 request whose client reset its stream (Shutdown itself does not:
// the stream is gone), which may still be deciding, so that its decision
// reaches the decision log before it closes.
func TestShutdownWaitsForResetStreams(t *testing.T) {
	tl, ca := loopbackTLS(t)
	var gate *gateEngine
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.TLS = tl
		gate = newGateEngine(o.Engine)
		gate.linger = 2 * time.Second // past Shutdown's own wait for HTTP/2 connections
		o.Engine = gate
	}})
	t.Cleanup(func() { close(gate.release) })
	addr, stop := start(t, f.srv)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+"/v1/decide", strings.NewReader(`{"action":"catalog:read"}`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := tr.RoundTrip(req)
		if err == nil {
			if resp.ProtoMajor != 2 {
				err = fmt.Errorf("protocol %s, want HTTP/2", resp.Proto)
			}
			resp.Body.Close()
		}
		done <- err
	}()
	<-gate.entered
	cancel() // RST_STREAM; the handler goes on for gate.linger
	<-done
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	gate.wantReturned(t)
}
