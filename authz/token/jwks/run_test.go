package jwks_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestRunLeavesNoGoroutines runs a Manager in a synctest bubble, on the
// bubble's fake clock and an in-memory transport, through scheduled and
// unknown-kid refreshes and lookups that wait for them, then cancels it.
// synctest.Test returns only once every goroutine started in the bubble
// has exited, and fails on any left blocked: a goroutine Run leaked would
// fail this test.
func TestRunLeavesNoGoroutines(t *testing.T) {
	p := newProvider(t, issuer(t, idp, "a"))
	p.mu.Lock()
	body := p.keys
	p.mu.Unlock()
	synctest.Test(t, func(t *testing.T) {
		requests := 0
		client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests++
			time.Sleep(10 * time.Millisecond) // a provider that takes its time
			return &http.Response{
				StatusCode: http.StatusOK,
				Header:     http.Header{"Cache-Control": {"max-age=300"}},
				Body:       io.NopCloser(bytes.NewReader(body)),
				Request:    r,
			}, nil
		})}
		m, err := jwks.New(jwks.Options{Issuer: idp, URL: "https://idp.test/jwks", HTTPClient: client,
			MinRefresh: time.Minute, MaxRefresh: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()

		// A lookup before the first fetch waits for it.
		keys, err := m.Lookup(ctx, "a")
		if err != nil || len(keys) != 1 {
			t.Fatalf("Lookup(a) at start = %v, %v", keys, err)
		}
		<-m.Initialized()
		time.Sleep(time.Hour) // about a dozen scheduled refreshes
		synctest.Wait()
		// Unknown kids: one refresh, shared by concurrent lookups.
		for range 3 {
			go func() { _, _ = m.Lookup(ctx, "nope") }()
		}
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		st := m.Status()
		if st.Refreshes.Schedule < 10 || st.Refreshes.UnknownKID != 1 || requests != int(st.Refreshes.Schedule+st.Refreshes.UnknownKID) {
			t.Errorf("after an hour: %d requests, status %+v", requests, st)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}
