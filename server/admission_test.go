package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

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
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	decideReq := func(body io.Reader) *http.Request {
		r := httptest.NewRequest(http.MethodPost, "/v1/decide", body)
		r.Header.Set("Content-Type", "application/json")
		return r
	}

	// A client that has not finished its body yet.
	slowBody, finish := io.Pipe()
	var wg sync.WaitGroup
	slow := make(chan *httptest.ResponseRecorder, 1)
	wg.Go(func() { slow <- serve(decideReq(slowBody)) })
	// Two decisions take both slots (and wait in the engine): the slow
	// client holds none.
	held := make(chan *httptest.ResponseRecorder, 2)
	for range 2 {
		wg.Go(func() { held <- serve(decideReq(strings.NewReader(`{"action":"catalog:read"}`))) })
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
	overloaded("decide", serve(decideReq(strings.NewReader(`{"action":"catalog:read"}`))))
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
// to be accepted while every open one is busy (here: a request not yet
// sent), and is served once another closes; an idle keep-alive connection
// is closed to make room at once.
func TestMaxConnections(t *testing.T) {
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
	addr, _ := start(t, f.srv)
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		open = append(open, c)
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
		t.Fatalf("a third connection was served while two were open: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	open[0].Close()
	if err := <-answered; err != nil {
		t.Fatalf("once a connection closed: %v", err)
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
