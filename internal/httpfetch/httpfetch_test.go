package httpfetch_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// secretQuery and secretUser stand for a presigned URL's token and a
// password in a URL; no error may contain them.
const (
	secretQuery = "sig=s3cr3t-query"
	secretUser  = "user:s3cr3t-pass"
)

// stuckServer is a server that reads a request's body and then answers
// nothing until the client leaves.
func stuckServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // then the server notices the client leaving
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// refusedURL is a URL with secretUser and secretQuery on a loopback port
// nobody listens on any more.
func refusedURL(t *testing.T, path string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + secretUser + "@" + l.Addr().String() + path + "?" + secretQuery
}

func TestGet(t *testing.T) {
	type answer struct {
		status  int
		etag    string
		body    string
		chunked bool // stream the body without a length
	}
	tests := []struct {
		name string
		ans  answer
		req  httpfetch.Request // URL is filled in

		want        httpfetch.Response // Header is not compared
		wantErr     error
		wantInErr   string
		wantIfMatch string // If-None-Match the server must see
	}{
		{name: "ok", ans: answer{status: 200, etag: `"v1"`, body: "doc"},
			want: httpfetch.Response{Body: []byte("doc"), ETag: `"v1"`}},
		{name: "conditional, changed", ans: answer{status: 200, etag: `"v2"`, body: "new"}, req: httpfetch.Request{ETag: `"v1"`},
			want: httpfetch.Response{Body: []byte("new"), ETag: `"v2"`}, wantIfMatch: `"v1"`},
		{name: "not modified keeps the request's etag", ans: answer{status: 304}, req: httpfetch.Request{ETag: `"v1"`},
			want: httpfetch.Response{ETag: `"v1"`, NotModified: true}, wantIfMatch: `"v1"`},
		{name: "not modified with a new etag", ans: answer{status: 304, etag: `"v1b"`}, req: httpfetch.Request{ETag: `"v1"`},
			want: httpfetch.Response{ETag: `"v1b"`, NotModified: true}, wantIfMatch: `"v1"`},
		{name: "304 to an unconditional request", ans: answer{status: 304},
			wantErr: httpfetch.ErrStatus, wantInErr: "304"},
		{name: "server error", ans: answer{status: 503, body: strings.Repeat("x", 100<<10)},
			wantErr: httpfetch.ErrStatus, wantInErr: "unexpected status 503 Service Unavailable"},
		{name: "content length over the limit", ans: answer{status: 200, body: strings.Repeat("x", 100)}, req: httpfetch.Request{MaxBytes: 64},
			wantErr: httpfetch.ErrTooLarge, wantInErr: "content length 100 over 64 bytes"},
		{name: "streamed body over the limit", ans: answer{status: 200, body: strings.Repeat("x", 100), chunked: true}, req: httpfetch.Request{MaxBytes: 64},
			wantErr: httpfetch.ErrTooLarge, wantInErr: "body over 64 bytes"},
		{name: "body at the limit", ans: answer{status: 200, body: strings.Repeat("x", 64), chunked: true}, req: httpfetch.Request{MaxBytes: 64},
			want: httpfetch.Response{Body: []byte(strings.Repeat("x", 64))}},
		{name: "default limit", ans: answer{status: 200, body: strings.Repeat("x", httpfetch.DefaultMaxBytes+1), chunked: true},
			wantErr: httpfetch.ErrTooLarge, wantInErr: "body over 1048576 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotIfMatch, gotAuth atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				gotIfMatch.Store(r.Header.Get("If-None-Match"))
				gotAuth.Store(r.Header.Get("Authorization"))
				if tc.ans.etag != "" {
					w.Header().Set("ETag", tc.ans.etag)
				}
				w.WriteHeader(tc.ans.status)
				if tc.ans.chunked {
					w.(http.Flusher).Flush()
				}
				_, _ = io.WriteString(w, tc.ans.body)
			}))
			t.Cleanup(srv.Close)
			req := tc.req
			req.URL = srv.URL + "/doc?" + secretQuery
			req.Header = http.Header{"Authorization": {"Bearer t0ken"}}
			got, err := httpfetch.Get(t.Context(), srv.Client(), req)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.wantInErr) {
					t.Fatalf("Get = %v, want %v containing %q", err, tc.wantErr, tc.wantInErr)
				}
				if want := "GET " + srv.URL + "/doc: "; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error %q does not start with %q", err, want)
				}
				noSecrets(t, err)
				return
			}
			if err != nil {
				t.Fatalf("Get: %v", err)
			}
			got.Header = nil
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Response (-want +got):\n%s", diff)
			}
			if g, _ := gotIfMatch.Load().(string); g != tc.wantIfMatch {
				t.Errorf("If-None-Match = %q, want %q", g, tc.wantIfMatch)
			}
			if g, _ := gotAuth.Load().(string); g != "Bearer t0ken" {
				t.Errorf("Authorization = %q, want the request's header", g)
			}
		})
	}
}

// TestGetHeaderNotModified: Get copies the caller's header; it never adds
// If-None-Match to it.
func TestGetHeaderNotModified(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "x") }))
	t.Cleanup(srv.Close)
	h := http.Header{"Accept": {"application/json"}}
	if _, err := httpfetch.Get(t.Context(), srv.Client(), httpfetch.Request{URL: srv.URL, Header: h, ETag: `"e"`}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(http.Header{"Accept": {"application/json"}}, h); diff != "" {
		t.Errorf("caller's header changed (-want +got):\n%s", diff)
	}
}

// TestGetFailuresAreQuiet: transport failures (refused connection,
// timeout, redirect refused, unparsable URL) never show the URL's
// credentials or query, and a repeated failure reads the same.
func TestGetFailuresAreQuiet(t *testing.T) {
	slow := stuckServer(t)
	closed := refusedURL(t, "/doc")

	tests := []struct {
		name    string
		req     httpfetch.Request
		wantErr error
		wantIn  string
	}{
		{name: "connection refused", req: httpfetch.Request{URL: closed}, wantIn: "connect"},
		{name: "timeout", req: httpfetch.Request{URL: slow.URL + "/doc?" + secretQuery, Timeout: 20 * time.Millisecond},
			wantErr: context.DeadlineExceeded, wantIn: "deadline"},
		{name: "unparsable URL", req: httpfetch.Request{URL: "http://h/%zz?" + secretQuery}, wantIn: "invalid URL"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, first := httpfetch.Get(t.Context(), http.DefaultClient, tc.req)
			_, again := httpfetch.Get(t.Context(), http.DefaultClient, tc.req)
			if first == nil || !strings.Contains(first.Error(), tc.wantIn) {
				t.Fatalf("Get = %v, want an error containing %q", first, tc.wantIn)
			}
			if tc.wantErr != nil && !errors.Is(first, tc.wantErr) {
				t.Errorf("Get = %v, want it to wrap %v", first, tc.wantErr)
			}
			noSecrets(t, first)
			if first.Error() != again.Error() {
				t.Errorf("a repeated failure reads differently:\n%s\n%s", first, again)
			}
		})
	}
}

func noSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range []string{secretQuery, "s3cr3t", "t0ken"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains %q", err, s)
		}
	}
}

// TestNewClient: the poller's own client trusts its CA file, refuses a
// redirect from https to http (whose target's query stays out of the
// error), and follows one from https to https.
func TestNewClient(t *testing.T) {
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "plain") }))
	t.Cleanup(plain.Close)
	tlsSrv := httptest.NewUnstartedServer(nil)
	tlsSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			http.Redirect(w, r, plain.URL+"/doc?"+secretQuery, http.StatusFound)
		case "/across":
			http.Redirect(w, r, "/doc", http.StatusFound)
		default:
			_, _ = io.WriteString(w, "secure")
		}
	})
	authztest.StartTLS(t, tlsSrv)
	roots := x509.NewCertPool()
	roots.AddCert(tlsSrv.Certificate())
	trusting := httpfetch.NewClient(func() *x509.CertPool { return roots })
	system := httpfetch.NewClient(nil)
	tests := []struct {
		name     string
		client   *http.Client
		path     string
		wantBody string
		wantErr  string
	}{
		{name: "trusted CA", client: trusting, path: "/doc", wantBody: "secure"},
		{name: "https to https redirect", client: trusting, path: "/across", wantBody: "secure"},
		{name: "https to http redirect", client: trusting, path: "/down", wantErr: "redirect from https to http refused"},
		{name: "system roots", client: system, path: "/doc", wantErr: "certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := httpfetch.Get(t.Context(), tc.client, httpfetch.Request{URL: tlsSrv.URL + tc.path})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Get = %v, want an error containing %q", err, tc.wantErr)
				}
				noSecrets(t, err)
				return
			}
			if err != nil || string(res.Body) != tc.wantBody {
				t.Fatalf("Get = %q, %v; want %q", res.Body, err, tc.wantBody)
			}
		})
	}

}

// TestNewClientRootsRotate: the client trusts the CAs in service for every
// new connection: a server whose certificate moves to a new CA is refused
// until the new CA is in service, then trusted, and then the old CA no
// longer is (its idle connection is not used again).
func TestNewClientRootsRotate(t *testing.T) {
	oldCA, newCA := authztest.NewCA(t, "old CA"), authztest.NewCA(t, "new CA")
	leaf := func(ca *authztest.CA) tls.Certificate {
		return ca.Issue(t, authztest.LeafOptions{CommonName: "127.0.0.1", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}).TLS
	}
	var serving atomic.Pointer[tls.Certificate]
	oldCert, newCert := leaf(oldCA), leaf(newCA)
	serving.Store(&oldCert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "doc") }))
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{Certificates: []tls.Certificate{*serving.Load()}}, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	var roots atomic.Pointer[x509.CertPool]
	roots.Store(oldCA.Pool())
	client := httpfetch.NewClient(roots.Load)
	t.Cleanup(client.CloseIdleConnections)
	get := func(what, wantErr string) {
		t.Helper()
		res, err := httpfetch.Get(t.Context(), client, httpfetch.Request{URL: srv.URL})
		switch {
		case wantErr == "" && (err != nil || string(res.Body) != "doc"):
			t.Fatalf("%s: %q, %v", what, res.Body, err)
		case wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)):
			t.Fatalf("%s: %v, want an error saying %q", what, err, wantErr)
		}
	}
	get("the old CA in service", "")
	serving.Store(&newCert)
	srv.CloseClientConnections() // the server moved on: new connections only
	get("a certificate of a CA not in service", "certificate")
	roots.Store(newCA.Pool())
	get("the new CA in service", "")
	serving.Store(&oldCert)
	srv.CloseClientConnections()
	get("a certificate of the CA rotated out", "certificate")
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{in: "https://idp.test/jwks", want: "https://idp.test/jwks"},
		{in: "https://user:pass@idp.test:8443/a/b?sig=x#frag", want: "https://idp.test:8443/a/b"},
		{in: "http://h/%zz", want: ""},
		{in: "", want: ""},
	} {
		if got := httpfetch.Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestValidURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{in: "https://idp.test/jwks", want: true},
		{in: "http://127.0.0.1:8080", want: true},
		{in: "ftp://x/b.tar.gz"},
		{in: "/relative"},
		{in: "https://"},
		{in: "idp"},
	} {
		if got := httpfetch.ValidURL(tc.in); got != tc.want {
			t.Errorf("ValidURL(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

// TestPost: any 2xx is a success and the body and header arrive as sent;
// any other status is a *StatusError with the code and Retry-After, its
// error naming the URL by Redact only.
func TestPost(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		wantCode   int           // 0: success
		wantWait   time.Duration // the StatusError's RetryAfter
	}{
		{name: "ok", status: http.StatusOK},
		{name: "created", status: http.StatusCreated},
		{name: "no content", status: http.StatusNoContent},
		{name: "server error", status: http.StatusServiceUnavailable, wantCode: 503},
		{name: "too many requests with seconds", status: http.StatusTooManyRequests, retryAfter: "7", wantCode: 429, wantWait: 7 * time.Second},
		{name: "retry-after garbage", status: http.StatusTooManyRequests, retryAfter: "soon", wantCode: 429},
		{name: "client error", status: http.StatusBadRequest, wantCode: 400},
		{name: "redirect is not a success", status: http.StatusNotModified, wantCode: 304},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotBody, gotType, gotAuth atomic.Value
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotBody.Store(string(b))
				gotType.Store(r.Header.Get("Content-Type"))
				gotAuth.Store(r.Header.Get("Authorization"))
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, strings.Repeat("x", 10<<10))
			}))
			t.Cleanup(srv.Close)
			h := http.Header{"Content-Type": {"application/json"}, "Authorization": {"Bearer t0ken"}}
			err := httpfetch.Post(t.Context(), srv.Client(), httpfetch.PostRequest{
				URL: srv.URL + "/in?" + secretQuery, Header: h, Body: []byte(`[1,2]`)})
			if g, _ := gotBody.Load().(string); g != `[1,2]` {
				t.Errorf("body = %q", g)
			}
			if g, _ := gotType.Load().(string); g != "application/json" {
				t.Errorf("Content-Type = %q", g)
			}
			if g, _ := gotAuth.Load().(string); g != "Bearer t0ken" {
				t.Errorf("Authorization = %q", g)
			}
			if tc.wantCode == 0 {
				if err != nil {
					t.Fatalf("Post: %v", err)
				}
				return
			}
			var se *httpfetch.StatusError
			if !errors.As(err, &se) || !errors.Is(err, httpfetch.ErrStatus) {
				t.Fatalf("Post = %v, want a *StatusError", err)
			}
			if se.Code != tc.wantCode || se.RetryAfter != tc.wantWait {
				t.Errorf("StatusError = %+v, want code %d, retry after %v", se, tc.wantCode, tc.wantWait)
			}
			if want := "POST " + srv.URL + "/in: unexpected status " + strconv.Itoa(tc.wantCode); !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
			noSecrets(t, err)
		})
	}
}

// TestPostFailuresAreQuiet: a refused connection and a timeout name the
// URL by Redact only, and the caller's header is left alone.
func TestPostFailuresAreQuiet(t *testing.T) {
	stuck := stuckServer(t)
	closed := refusedURL(t, "/in")
	h := http.Header{"Authorization": {"Bearer t0ken"}}
	for _, tc := range []struct {
		name   string
		req    httpfetch.PostRequest
		wantIn string
	}{
		{name: "connection refused", req: httpfetch.PostRequest{URL: closed, Header: h}, wantIn: "connect"},
		{name: "timeout", req: httpfetch.PostRequest{URL: stuck.URL + "/in?" + secretQuery, Header: h, Body: []byte("x"), Timeout: 20 * time.Millisecond}, wantIn: "deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := httpfetch.Post(t.Context(), http.DefaultClient, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.wantIn) || !strings.HasPrefix(err.Error(), "POST ") {
				t.Fatalf("Post = %v, want a POST error containing %q", err, tc.wantIn)
			}
			if errors.Is(err, httpfetch.ErrStatus) {
				t.Errorf("a transport failure is a status error: %v", err)
			}
			noSecrets(t, err)
		})
	}
	if diff := cmp.Diff(http.Header{"Authorization": {"Bearer t0ken"}}, h); diff != "" {
		t.Errorf("caller's header changed (-want +got):\n%s", diff)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)
	for _, tc := range []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{in: "120", want: 2 * time.Minute, wantOK: true},
		{in: " 0 ", want: 0, wantOK: true},
		{in: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second, wantOK: true},
		{in: now.Add(-time.Hour).Format(http.TimeFormat), want: 0, wantOK: true},
		{in: ""},
		{in: "-5"},
		{in: "1.5"},
		{in: "tomorrow"},
	} {
		got, ok := httpfetch.ParseRetryAfter(tc.in, now)
		if got != tc.want || ok != tc.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
		}
	}
}

// TestLongStatusLineBounded: the reason phrase is the server's text, up to
// the client's header limit (10 MiB). A collector, bundle server or key
// set endpoint answering one made every failure's log line (once an
// attempt) and /v1/status that long; the error keeps its first 128 bytes.
func TestLongStatusLineBounded(t *testing.T) {
	reason := strings.Repeat("é", 1<<19) // 1 MiB, and a cut inside a character
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = buf.WriteString("HTTP/1.1 503 x" + reason + "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
		_ = buf.Flush()
	}))
	t.Cleanup(srv.Close)
	for name, do := range map[string]func() error{
		"get": func() error {
			_, err := httpfetch.Get(t.Context(), srv.Client(), httpfetch.Request{URL: srv.URL})
			return err
		},
		"post": func() error {
			return httpfetch.Post(t.Context(), srv.Client(), httpfetch.PostRequest{URL: srv.URL, Body: []byte("[]")})
		},
	} {
		t.Run(name, func(t *testing.T) {
			err := do()
			var se *httpfetch.StatusError
			if !errors.As(err, &se) || se.Code != 503 {
				t.Fatalf("err = %v, want a 503 StatusError", err)
			}
			if len(se.Status) > 128+len("…") || !strings.HasPrefix(se.Status, "503 xé") || !strings.HasSuffix(se.Status, "é…") {
				t.Errorf("Status is %d bytes, %.40q…%q", len(se.Status), se.Status, se.Status[max(0, len(se.Status)-8):])
			}
			if len(err.Error()) > 512 {
				t.Errorf("error is %d bytes", len(err.Error()))
			}
		})
	}
}
