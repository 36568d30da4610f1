package server

import (
	"encoding/json"
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
// to be accepted, and is served once another closes.
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
