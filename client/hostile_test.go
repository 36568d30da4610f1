package client_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/client"
)

const allowAnswer = `{"decision_id": "D1", "allow": true, "reasons": []}`

// TestRedirectsAreNotFollowed: a server (or anything in front of it) that
// answers with a redirect to an allowing place got the decision from
// there, and sent that place the tokens and the extra headers. A 3xx is now
// an unexpected answer, a deny, also with the caller's own HTTP client.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var stolen atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		stolen.Add(1)
		io.WriteString(w, allowAnswer)
	}))
	defer other.Close()
	for _, status := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", status)
		}))
		for _, hc := range []*http.Client{nil, {}} {
			c := newClient(t, client.Options{URL: srv.URL, HTTPClient: hc, Retries: -1, Header: http.Header{"X-Api-Key": {"k"}}})
			d, err := c.Decide(t.Context(), client.Request{Token: "subject-token", Action: client.Action{Name: "read"}})
			if d.Allow || !errors.Is(err, client.ErrProtocol) {
				t.Errorf("%d: allow %v (%v), want a deny with ErrProtocol", status, d.Allow, err)
			}
		}
		srv.Close()
	}
	if n := stolen.Load(); n != 0 {
		t.Errorf("the redirect's target was asked %d times", n)
	}
}

// TestTimeoutAppliesWithTheCallersDeadline: Options.Timeout bounds a call
// also when the caller's context has a later deadline; it was ignored
// then, and a server that answered allow after its own delay was waited
// for.
func TestTimeoutAppliesWithTheCallersDeadline(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		case <-time.After(5 * time.Second):
			io.WriteString(w, allowAnswer)
		}
	}))
	defer slow.Close()
	defer close(release)
	c := newClient(t, client.Options{URL: slow.URL, Timeout: 100 * time.Millisecond, Retries: -1})
	ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
	defer cancel()
	d, err := c.Decide(ctx, client.Request{Action: client.Action{Name: "read"}})
	if d.Allow || !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("allow %v (%v), want a deny with ErrUnavailable at the client's timeout", d.Allow, err)
	}
}

// TestOptionsAreNotLeakedOrShared: a URL's password is not in New's error;
// extra headers are canonical (one Authorization, never a second
// Content-Type) and copied (changing the caller's map later changes
// nothing).
func TestOptionsAreNotLeakedOrShared(t *testing.T) {
	if _, err := client.New(client.Options{URL: "ftp://user:hunter2@example.com"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New: %v, want an error without the password", err)
	}
	if _, err := client.New(client.Options{URL: "user:hunter2@127.0.0.1:8181"}); err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("New: %v, want an error without the password", err)
	}
	// A URL without a scheme, and so without a password, is shown, with
	// what it lacks.
	if _, err := client.New(client.Options{URL: "127.0.0.1:8181"}); err == nil || !strings.Contains(err.Error(), `"127.0.0.1:8181"`) ||
		!strings.Contains(err.Error(), "no scheme") {
		t.Errorf("New: %v, want an error showing the URL and saying it has no scheme", err)
	}
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
		io.WriteString(w, allowAnswer)
	}))
	defer srv.Close()
	h := http.Header{"authorization": {"Bearer a"}, "content-type": {"text/plain"}}
	c := newClient(t, client.Options{URL: srv.URL, Header: h})
	h["authorization"] = []string{"Bearer changed"}
	if _, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "read"}}); err != nil {
		t.Fatal(err)
	}
	sent := <-got
	if ct := sent.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
		t.Errorf("Content-Type %q, want only application/json", ct)
	}
	if a := sent.Values("Authorization"); len(a) != 1 || a[0] != "Bearer a" {
		t.Errorf("Authorization %q, want the one given to New", a)
	}
}

// TestNewRefusesQueryAndFragment: a base URL with a query or a fragment was
// taken, and /v1/decide appended after it: "http://h/?tenant=a" asked
// "/?tenant=a/v1/decide", the server's root with a query. New refuses it;
// the endpoint is the base path joined with v1/decide.
func TestNewRefusesQueryAndFragment(t *testing.T) {
	for _, u := range []string{
		"http://h/?tenant=a", "http://h?tenant=a", "http://h/base?", "http://h/#frag", "http://h#",
		"https://user:hunter2@h/?tenant=a",
	} {
		_, err := client.New(client.Options{URL: u})
		if !errors.Is(err, client.ErrOptions) || !strings.Contains(err.Error(), "query or a fragment") {
			t.Errorf("New(%q): %v; want ErrOptions naming the query or fragment", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("New(%q): %v shows the password", u, err)
		}
	}
	asked := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked <- r.URL.RequestURI()
		io.WriteString(w, allowAnswer)
	}))
	defer srv.Close()
	for _, tc := range []struct{ base, want string }{
		{"", "/v1/decide"},
		{"/", "/v1/decide"},
		{"//", "/v1/decide"},
		{"/verdict", "/verdict/v1/decide"},
		{"/verdict/", "/verdict/v1/decide"},
		{"/verdict/./", "/verdict/v1/decide"},
	} {
		c := newClient(t, client.Options{URL: srv.URL + tc.base, Retries: -1})
		if _, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "read"}}); err != nil {
			t.Fatal(err)
		}
		if got := <-asked; got != tc.want {
			t.Errorf("base %q: asked %q, want %q", tc.base, got, tc.want)
		}
	}
}

// TestDenyPageHidesCauses: the middleware's deny page shows the person
// denied a failure's category, not its cause (addresses, the server's
// message), which is for the service's logs.
func TestDenyPageHidesCauses(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, `{"error": {"code": "policy_error", "message": "tenant_db.rego:12: conn to db.internal:5432 failed"}}`)
	}))
	defer srv.Close()
	c := newClient(t, client.Options{URL: srv.URL})
	h := c.Middleware(client.MiddlewareOptions{})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/orders/1", nil))
	if body := w.Body.String(); w.Code != http.StatusInternalServerError || strings.Contains(body, "db.internal") || !strings.Contains(body, "client: policy error") {
		t.Errorf("%d %s, want 500 naming the category only", w.Code, body)
	}
}

// TestRetryAfterFarInTheFuture: a Retry-After date centuries ahead is a
// wait past any deadline, so the error comes back at once after one call.
// Spread by the retry jitter, the wait overflowed into a negative
// duration, and the client retried after its own short delay, sooner than
// the server asked and as many times as Options.Retries allows.
func TestRetryAfterFarInTheFuture(t *testing.T) {
	for _, after := range []string{"Fri, 31 Dec 9999 23:59:59 GMT", "4294967295"} {
		var calls atomic.Int64
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls.Add(1)
			w.Header().Set("Retry-After", after)
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		// Enough tries that one of them spreads the wait past what a
		// duration holds (the factor is random, up to 1.2).
		c := newClient(t, client.Options{URL: srv.URL, Retries: 50, RetryDelay: time.Millisecond})
		for range 20 {
			calls.Store(0)
			d, err := c.Decide(t.Context(), client.Request{Action: client.Action{Name: "read"}})
			if d.Allow || !errors.Is(err, client.ErrUnavailable) || calls.Load() != 1 {
				t.Fatalf("Retry-After %q: allow %v (%v) after %d calls; want ErrUnavailable after one call", after, d.Allow, err, calls.Load())
			}
		}
		srv.Close()
	}
}
