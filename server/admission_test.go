package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// serveRequest serves r with h and returns the answer.
func serveRequest(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// decideRequestOf is a POST /v1/decide of body, read as the server reads
// it: with a Content-Length only for a body whose length is known.
func decideRequestOf(body io.Reader) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/v1/decide", body)
	r.Header.Set("Content-Type", "application/json")
	return r
}

// TestAdmission: with every decision slot taken, a request on any
// interface waits, then is answered 503 overloaded with Retry-After and
// counted; a slot freed admits the next. A client still sending its body
// holds no slot. Health is never shed.
func TestAdmission(t *testing.T) {
	var gate *gateEngine
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.Limits.MaxConcurrentDecisions = 2
		gate = newGateEngine(o.Engine)
		gate.entered = make(chan struct{}, 8)
		o.Engine = gate
	}})
	f.srv.admission.wait = 50 * time.Millisecond
	h := f.srv.Handler()
	serve := func(r *http.Request) *httptest.ResponseRecorder { return serveRequest(h, r) }

	// A client that has not finished its body yet.
	slowBody, finish := io.Pipe()
	var wg sync.WaitGroup
	slow := make(chan *httptest.ResponseRecorder, 1)
	wg.Go(func() { slow <- serve(decideRequestOf(slowBody)) })
	// Two decisions take both slots (and wait in the engine): the slow
	// client holds none.
	held := make(chan *httptest.ResponseRecorder, 2)
	for range 2 {
		wg.Go(func() { held <- serve(decideRequestOf(strings.NewReader(`{"action":"catalog:read"}`))) })
	}
	for range 2 {
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("two decisions were not admitted beside a client still sending its body")
		}
	}

	overloaded := func(name string, w *httptest.ResponseRecorder) {
		t.Helper()
		var body struct{ Error struct{ Code string } }
		_ = json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != http.StatusServiceUnavailable || body.Error.Code != CodeOverloaded || w.Header().Get("Retry-After") != "1" {
			t.Errorf("%s with every slot taken: %d %s %v, want 503 overloaded with Retry-After: 1", name, w.Code, w.Body, w.Header())
		}
	}
	overloaded("decide", serve(decideRequestOf(strings.NewReader(`{"action":"catalog:read"}`))))
	check := httptest.NewRequest(http.MethodGet, "/v1/check", nil)
	check.Header.Set("X-Verdict-Action", "catalog:read")
	overloaded("check", serve(check))
	if w := serve(httptest.NewRequest(http.MethodGet, "/health/live", nil)); w.Code != http.StatusOK {
		t.Errorf("health shed: %d", w.Code)
	}
	if !strings.Contains(scrape(t, f.srv), `verdict_decisions_shed_total{api="check"} 1`) ||
		!strings.Contains(scrape(t, f.srv), `verdict_decisions_shed_total{api="decide"} 1`) {
		t.Errorf("shed requests not counted:\n%s", scrape(t, f.srv))
	}

	// A slot freed: the slow client, done with its body, is admitted.
	gate.release <- struct{}{}
	if w := <-held; w.Code != http.StatusOK {
		t.Fatalf("held decision: %d %s", w.Code, w.Body)
	}
	_, _ = finish.Write([]byte(`{"action":"catalog:read"}`))
	finish.Close()
	select {
	case <-gate.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow client was not admitted once a slot freed")
	}
	close(gate.release)
	wg.Wait()
	if w := <-slow; w.Code != http.StatusOK {
		t.Fatalf("slow client: %d %s", w.Code, w.Body)
	}
}

// TestMaxConnections: beyond limits.max_connections a new connection waits
// to be accepted while every open one is busy (here: deciding a request,
// the policy evaluating), and is served once one is not. (A connection
// that has sent nothing, sits idle or waits, for its client's bytes or
// for room others hold, is closed to make room at once: see
// TestMaxConnectionsClosesIdle, TestMaxConnectionsSlowBodies,
// TestSlotWaitIsNotBusy, TestLimitListenerEvicts.)
func TestMaxConnections(t *testing.T) {
	var gate *gateEngine
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.Limits.MaxConnections = 2
		gate = newGateEngine(o.Engine)
		gate.entered = make(chan struct{}, 8)
		o.Engine = gate
	}})
	addr, _ := start(t, f.srv)
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		body := `{"action":"catalog:read"}`
		if _, err := fmt.Fprintf(c, "POST /v1/decide HTTP/1.1\r\nHost: verdict\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
			t.Fatal(err)
		}
	}
	// Both are deciding before the third comes.
	for range 2 {
		select {
		case <-gate.entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the two requests were not decided")
		}
	}
	answered := make(chan error, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
		resp, err := c.Get("http://" + addr + "/health/live")
		if err == nil {
			resp.Body.Close()
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		t.Fatalf("a third connection was served while two were busy: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(gate.release) // both answered: their connections idle
	if err := <-answered; err != nil {
		t.Fatalf("once a connection was no longer busy: %v", err)
	}
}

// TestMaxConnectionsSlowBodies: at limits.max_connections, connections
// whose requests send their bodies slowly (or not at all) are not busy:
// they make room, each for the next, before a connection that has had a
// request answered, and a new client is served beside them at once.
func TestMaxConnectionsSlowBodies(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
	addr, _ := start(t, f.srv)
	kept, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	keptReader := bufio.NewReader(kept)
	ask := func() error {
		if _, err := io.WriteString(kept, "GET /health/live HTTP/1.1\r\nHost: verdict\r\n\r\n"); err != nil {
			return err
		}
		resp, err := http.ReadResponse(keptReader, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	if err := ask(); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := io.WriteString(c, "POST /v1/decide HTTP/1.1\r\nHost: verdict\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"action\""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/health/live")
	if err != nil {
		t.Fatalf("a new client beside connections sending their bodies slowly: %v", err)
	}
	resp.Body.Close()
	if err := ask(); err != nil {
		t.Errorf("the connection that had a request answered was closed for them: %v", err)
	}
}

// TestMaxConnectionsTrickledBodies: a connection whose body arrives a
// byte at a time is idle since its body's read began, not since its latest
// byte: at the bound, two such connections (each with a request answered
// first, so not "never answered") go before a client idle for less time
// than their bodies have been arriving.
func TestMaxConnectionsTrickledBodies(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 3 }})
	addr, _ := start(t, f.srv)
	dial := func() (net.Conn, func() error) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		br := bufio.NewReader(c)
		return c, func() error {
			if _, err := io.WriteString(c, "GET /health/live HTTP/1.1\r\nHost: verdict\r\n\r\n"); err != nil {
				return err
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
	}
	_, kept := dial()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for range 2 {
		c, ask := dial()
		if err := ask(); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(c, "POST /v1/decide HTTP/1.1\r\nHost: verdict\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"); err != nil {
			t.Fatal(err)
		}
		go func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for ; ctx.Err() == nil; <-tick.C {
				if _, err := io.WriteString(c, " "); err != nil {
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := kept(); err != nil { // answered after the bodies began
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // idle for less than the bodies have been arriving
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + addr + "/health/live")
	if err != nil {
		t.Fatalf("a new client at the bound: %v", err)
	}
	resp.Body.Close()
	if err := kept(); err != nil {
		t.Errorf("the idle client was closed for a connection trickling its body: %v", err)
	}
}

// TestMaxConnectionsClosesIdle: clients that asked once and keep their
// connections open do not shut a new client out: one of their idle
// connections is closed to make room.
func TestMaxConnectionsClosesIdle(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
	addr, _ := start(t, f.srv)
	for range 2 {
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get("http://" + addr + "/health/live")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close() // the connection stays open, idle
	}
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/health/live")
	if err != nil {
		t.Fatalf("a new client while two idle connections fill the limit: %v", err)
	}
	resp.Body.Close()
	if m := scrape(t, f.srv); !strings.Contains(m, "verdict_http_connections_idle_closed_total 1") ||
		!strings.Contains(m, "verdict_http_connections_open ") {
		t.Errorf("connection metrics:\n%s", grep(m, "verdict_http_connections"))
	}
}

// TestAdmitOverloadedForAShortDeadline: a request whose caller gives it
// less time than the wait (Envoy's ext_authz timeout) is answered
// overloaded, not left to its deadline, and counted as shed; so is one
// whose client goes away while it waits.
func TestAdmitOverloadedForAShortDeadline(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConcurrentDecisions = 1 }})
	release, err := f.srv.admit(t.Context(), apiDecide)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	short, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond) // under the margin: at once
	defer cancel()
	if _, err := f.srv.admit(short, apiDecide); !errors.Is(err, errOverloaded) || short.Err() != nil {
		t.Errorf("short deadline: %v (context %v), want overloaded before the deadline", err, short.Err())
	}
	gone, cancelGone := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancelGone)
	if _, err := f.srv.admit(gone, apiDecide); !errors.Is(err, errOverloaded) {
		t.Errorf("client gone: %v, want overloaded", err)
	}
	if m := scrape(t, f.srv); !strings.Contains(m, `verdict_decisions_shed_total{api="decide"} 2`) || !strings.Contains(m, `verdict_decisions_shed_total{api="check"} 0`) {
		t.Errorf("shed not counted, or series missing:\n%s", m)
	}
}

// TestDecodePanicGivesSlotBack: a decoder that panics does not keep its
// decision slot.
func TestDecodePanicGivesSlotBack(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConcurrentDecisions = 1 }})
	r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(`{}`))
	func() {
		defer func() { _ = recover() }()
		_, _ = f.srv.decodeBody(httptest.NewRecorder(), r, apiDecide, func(*jsonReader, []byte) error { panic("decoder bug") })
	}()
	release, err := f.srv.admit(t.Context(), apiDecide)
	if err != nil {
		t.Fatalf("the slot was kept by the panicking decode: %v", err)
	}
	release()
}

// TestBodyBudgetAsLargeAsTheLimit: with no more room than one body of
// the limit, a body of any length up to it is read, whether its length is
// declared or not (the reservation never goes past the limit), and one
// byte more is 413.
func TestBodyBudgetAsLargeAsTheLimit(t *testing.T) {
	const limit = 100_000 // not a probe doubled
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.Limits.MaxBodyBytes = limit
		o.Limits.MaxBodyBytesInFlight = limit
	}})
	h := f.srv.Handler()
	padded := func(n int) string {
		head, tail := `{"action":"catalog:read","resource":{"pad":"`, `"}}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	for _, n := range []int{bodyProbe, bodyProbe + 1, 65_537, 70_000, limit - 1, limit, limit + 1} {
		want := http.StatusOK
		if n > limit {
			want = http.StatusRequestEntityTooLarge
		}
		for _, declared := range []bool{true, false} {
			var body io.Reader = strings.NewReader(padded(n))
			if !declared {
				body = io.MultiReader(body)
			}
			if w := serveRequest(h, decideRequestOf(body)); w.Code != want {
				t.Errorf("%d bytes, length declared %v: %d %s, want %d", n, declared, w.Code, w.Body, want)
			}
			if used := f.srv.admission.bodies.Used(); used != 0 {
				t.Fatalf("%d bytes reserved after the answer", used)
			}
		}
	}
}

// TestBodyBudget: a body holds none of limits.max_body_bytes_in_flight
// until it has sent more than bodyProbe bytes, then the capacity of the
// buffer it is read into, doubled as it fills (never more than twice
// what it sent); its first reservation waits for bytes to free, a later
// one is overloaded at once; every end gives the bytes back.
func TestBodyBudget(t *testing.T) {
	const limit = 64 << 10
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.Limits.MaxBodyBytes = limit
		o.Limits.MaxBodyBytesInFlight = 2 * limit
	}})
	a := f.srv.admission
	a.wait = 50 * time.Millisecond
	h := f.srv.Handler()
	serve := func(r *http.Request) *httptest.ResponseRecorder { return serveRequest(h, r) }
	padded := func(n int) string { // a valid body of n bytes
		head, tail := `{"action":"catalog:read","resource":{"pad":"`, `"}}`
		return head + strings.Repeat("x", n-len(head)-len(tail)) + tail
	}
	reservedBecomes := func(want int64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); a.bodies.Used() != want; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("body bytes reserved: %d, want %d", a.bodies.Used(), want)
			}
		}
	}
	overloaded := func(name string, w *httptest.ResponseRecorder) {
		t.Helper()
		if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "max_body_bytes_in_flight") || w.Header().Get("Retry-After") != "1" {
			t.Errorf("%s: %d %s, want 503 overloaded naming limits.max_body_bytes_in_flight", name, w.Code, w.Body)
		}
	}
	// stall starts a request whose body (length not declared) stops after
	// sent bytes of full; finish sends the rest.
	stall := func(full string, sent int) (answer <-chan *httptest.ResponseRecorder, finish func()) {
		body, send := io.Pipe()
		out := make(chan *httptest.ResponseRecorder, 1)
		go func() { out <- serve(decideRequestOf(body)) }()
		if _, err := send.Write([]byte(full[:sent])); err != nil {
			t.Fatal(err)
		}
		return out, func() { _, _ = send.Write([]byte(full[sent:])); send.Close() }
	}
	ok := func(name string, answer <-chan *httptest.ResponseRecorder) {
		t.Helper()
		if w := <-answer; w.Code != http.StatusOK {
			t.Errorf("%s: %d %s", name, w.Code, w.Body)
		}
	}

	// Clients that send nothing, or no more than a probe, hold none of
	// the budget, however many: a body read beside them is not shed.
	var finishQuiet []func()
	var quiet []<-chan *httptest.ResponseRecorder
	for i := range 200 {
		full := padded(12 << 10)
		answer, finish := stall(full, i%2*bodyProbe) // nothing, or a whole probe
		quiet, finishQuiet = append(quiet, answer), append(finishQuiet, finish)
	}
	if w := serve(decideRequestOf(strings.NewReader(padded(30 << 10)))); w.Code != http.StatusOK {
		t.Errorf("a 30 KiB body beside 200 silent ones: %d %s", w.Code, w.Body)
	}
	reservedBecomes(0)
	for i, finish := range finishQuiet {
		finish()
		ok("a quiet client", quiet[i])
	}
	reservedBecomes(0)

	// A client sends 40 KiB of its body and stalls: it holds the 64 KiB
	// buffer they are in, not more. Another stops at 20 KiB: 32 KiB.
	big := padded(60 << 10)
	bigAnswer, finishBig := stall(big, 40<<10)
	reservedBecomes(64 << 10)
	half := padded(24 << 10)
	halfAnswer, finishHalf := stall(half, 20<<10)
	reservedBecomes(96 << 10)

	// 40 KiB: 32 KiB of room, so its first reservations fit and its last
	// (64 KiB) does not: overloaded at once, its bytes given back.
	a.wait = time.Minute
	start := time.Now()
	overloaded("a body past the budget", serve(decideRequestOf(io.MultiReader(strings.NewReader(padded(40<<10))))))
	if waited := time.Since(start); waited >= 30*time.Second {
		t.Errorf("a body holding a part waited %v for the rest", waited)
	}
	a.wait = 50 * time.Millisecond
	reservedBecomes(96 << 10)
	if m := scrape(t, f.srv); !strings.Contains(m, `verdict_decisions_shed_total{api="decide"} 1`) ||
		!strings.Contains(m, fmt.Sprintf("verdict_request_body_bytes_reserved %d", 96<<10)) {
		t.Errorf("metrics:\n%s%s", grep(m, "shed_total"), grep(m, "body_bytes"))
	}

	// Another stalled client takes the rest: a body past the probe waits
	// for its first reservation, and is overloaded when none frees in
	// time; one within the probe is read.
	rest := padded(24 << 10)
	restAnswer, finishRest := stall(rest, 20<<10)
	reservedBecomes(128 << 10)
	overloaded("a first reservation with the budget spent", serve(decideRequestOf(strings.NewReader(padded(bodyProbe+1)))))
	if w := serve(decideRequestOf(strings.NewReader(padded(bodyProbe)))); w.Code != http.StatusOK {
		t.Errorf("a body of a probe with the budget spent: %d %s", w.Code, w.Body)
	}
	// ...or admitted when bytes free.
	a.wait = 10 * time.Second
	waiting := make(chan *httptest.ResponseRecorder, 1)
	go func() { waiting <- serve(decideRequestOf(strings.NewReader(padded(bodyProbe + 1)))) }()
	time.Sleep(20 * time.Millisecond) // let it wait (it is admitted either way)
	finishRest()
	ok("the stalled client that took the rest", restAnswer)
	ok("the waiting body", waiting)
	finishHalf()
	ok("the 20 KiB stalled client", halfAnswer)
	finishBig()
	ok("the big stalled client", bigAnswer)
	reservedBecomes(0)

	// Every other end gives the bytes back too.
	gone, cancel := context.WithCancel(t.Context())
	partBody, part := io.Pipe()
	cut := make(chan *httptest.ResponseRecorder, 1)
	go func() { cut <- serve(decideRequestOf(partBody).WithContext(gone)) }()
	_, _ = part.Write([]byte(big[:20<<10]))
	reservedBecomes(32 << 10)
	cancel()
	part.CloseWithError(errors.New("client went away"))
	<-cut
	reservedBecomes(0)
	for _, tc := range []struct {
		name string
		body io.Reader
		want int
	}{
		{"over the limit, length not declared", io.MultiReader(strings.NewReader(padded(limit)), strings.NewReader("x")), http.StatusRequestEntityTooLarge},
		{"exactly the limit, length not declared", io.MultiReader(strings.NewReader(padded(limit))), http.StatusOK},
		{"exactly the limit, length declared", strings.NewReader(padded(limit)), http.StatusOK},
		{"over the limit, length declared", strings.NewReader(padded(limit + 1)), http.StatusRequestEntityTooLarge},
		{"a probe and a byte, length not declared", io.MultiReader(strings.NewReader(padded(bodyProbe + 1))), http.StatusOK},
		{"a probe, length not declared", io.MultiReader(strings.NewReader(padded(bodyProbe))), http.StatusOK},
		{"malformed", strings.NewReader(`{"action":`), http.StatusBadRequest},
		{"empty", strings.NewReader(""), http.StatusBadRequest},
		{"empty, length not declared", io.MultiReader(), http.StatusBadRequest},
	} {
		if w := serve(decideRequestOf(tc.body)); w.Code != tc.want {
			t.Errorf("%s: %d %s, want %d", tc.name, w.Code, w.Body, tc.want)
		}
		reservedBecomes(0)
	}
}

// stalledAnswer is a ResponseWriter whose first Write blocks until
// release is closed, as a write to a client that takes no answer does.
type stalledAnswer struct {
	*httptest.ResponseRecorder
	writing chan struct{} // closed when the first Write begins
	release chan struct{}
	once    sync.Once
}

func (w *stalledAnswer) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.writing) })
	<-w.release
	return w.ResponseRecorder.Write(p)
}

// TestSlotGivenBackBeforeTheAnswer: a decision slot is held while the
// request is decided, not while its answer is written: a client that
// takes its answers slowly (an HTTP/2 window of zero) cannot hold every
// slot for the write timeout. On every route that takes one.
func TestSlotGivenBackBeforeTheAnswer(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConcurrentDecisions = 1 }})
	az, err := New(Options{Engine: newEchoEngine(t, true), Limits: Limits{MaxConcurrentDecisions: 1},
		AuthZEN: &AuthZEN{TrustedPeers: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}})
	if err != nil {
		t.Fatal(err)
	}
	item := `{"subject": {"type": "user", "id": "a"}, "action": {"name": "allow_read"}, "resource": {"type": "doc", "id": "1"}}`
	for _, tc := range []struct {
		name string
		srv  *Server
		req  func() *http.Request
	}{
		{"decide", f.srv, func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(`{"action":"catalog:read"}`))
			r.Header.Set("Content-Type", "application/json")
			return r
		}},
		{"check", f.srv, func() *http.Request {
			r := httptest.NewRequest(http.MethodGet, "/v1/check", nil)
			r.Header.Set("X-Forwarded-Method", "GET")
			r.Header.Set("X-Forwarded-Uri", "/catalog")
			return r
		}},
		{"authzen evaluation", az, func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/access/v1/evaluation", strings.NewReader(item))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = "10.1.2.3:40000"
			return r
		}},
		{"authzen batch", az, func() *http.Request {
			r := httptest.NewRequest(http.MethodPost, "/access/v1/evaluations", strings.NewReader(`{"evaluations": [`+item+`, `+item+`]}`))
			r.Header.Set("Content-Type", "application/json")
			r.RemoteAddr = "10.1.2.3:40000"
			return r
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &stalledAnswer{ResponseRecorder: httptest.NewRecorder(), writing: make(chan struct{}), release: make(chan struct{})}
			done := make(chan struct{})
			go func() {
				defer close(done)
				tc.srv.Handler().ServeHTTP(w, tc.req())
			}()
			defer func() { <-done }()
			defer close(w.release)
			select {
			case <-w.writing:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not write its answer")
			}
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			release, err := tc.srv.admit(ctx, apiDecide)
			if err != nil {
				t.Fatalf("the only decision slot is held while the answer is written: %v", err)
			}
			release()
		})
	}
}

// TestBodyBudgetWaitIsNotBusy: a connection whose only call waits for
// room in the body budget (held by others' bodies) is not busy: at the
// connection bound it is closed to make room, as one waiting for its
// client's bytes is. Otherwise clients that hold the budget with slow
// bodies and keep one call waiting on each connection shut new clients
// out.
func TestBodyBudgetWaitIsNotBusy(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	for f.srv.admission.bodies.Take(1 << 10) {
	}
	l := newLimitListener(nil, 1)
	c, _ := servedPipe(t, l)
	r := httptest.NewRequest(http.MethodPost, "/v1/decide", strings.NewReader(strings.Repeat("x", bodyProbe+100))).
		WithContext(l.connContext(t.Context(), c))
	done := make(chan error, 1)
	go reportCalls(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := f.srv.readBody(w, r, 64<<10)
		done <- err
	})).ServeHTTP(httptest.NewRecorder(), r)
	deadline := time.Now().Add(10 * time.Second)
	for f.srv.admission.bodies.Waiting() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the body did not wait for the budget")
		}
		time.Sleep(time.Millisecond)
	}
	l.closeIdle()
	closed := pipeClosed(c)
	if err := <-done; !errors.Is(err, errOverloaded) {
		t.Errorf("the body read: %v, want overloaded", err)
	}
	if !closed {
		t.Fatal("a connection whose only call waits for the body budget counted busy: nothing was closed to make room")
	}
}

// TestSlotWaitIsNotBusy: a connection whose only call waits for a
// decision slot is not busy either (see TestBodyBudgetWaitIsNotBusy).
func TestSlotWaitIsNotBusy(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConcurrentDecisions = 1 }})
	held, err := f.srv.admit(t.Context(), apiDecide)
	if err != nil {
		t.Fatal(err)
	}
	defer held()
	l := newLimitListener(nil, 1)
	c, lc := servedPipe(t, l)
	lc.callStarted()
	done := make(chan error, 1)
	go func() {
		_, err := f.srv.admit(l.connContext(t.Context(), c), apiDecide)
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !l.isIdle(c) {
		if time.Now().After(deadline) {
			t.Fatal("a connection whose only call waits for a decision slot never counted idle")
		}
		time.Sleep(time.Millisecond)
	}
	l.closeIdle()
	if !pipeClosed(c) {
		t.Fatal("the connection waiting for a slot was not closed to make room")
	}
	if err := <-done; !errors.Is(err, errOverloaded) {
		t.Errorf("the wait: %v, want overloaded", err)
	}
}
