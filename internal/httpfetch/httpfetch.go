// Package httpfetch performs the HTTP exchanges Verdict's background parts
// share: the pollers' conditional GET of a whole document (a policy bundle,
// a JSON Web Key Set, an OpenID Connect discovery document), bounded in
// time and size, and the decision log's POST of a whole body (Post).
//
// What it guarantees, for every caller:
//
//   - Conditional. With Request.ETag set, the request carries If-None-Match
//     and a 304 Not Modified is a success without a body
//     (Response.NotModified). A 304 to a request without ETag is an
//     unexpected status.
//   - Strict. Only 200 and that 304 are successes (any 2xx for Post); any
//     other status is a *StatusError (errors.Is(err, ErrStatus) holds),
//     after at most 4 KiB of its body were drained so that the connection
//     can be reused. It carries the code and the server's Retry-After.
//   - Bounded. Request.Timeout covers the whole exchange, body included;
//     Request.MaxBytes is checked against Content-Length before reading
//     and again while reading, which stops at the first byte over it
//     (ErrTooLarge), so a lying or endless body costs no more than the cap.
//   - Quiet about secrets. Errors name the URL by Redact only (scheme,
//     host and path): never its user information, which may be a
//     password, nor its query, which may be a presigned token. Request
//     headers (an Authorization header, say) never appear in errors.
//   - Stable. A failure that repeats reads the same each time: the local
//     address of a failed connection (an ephemeral port) is left out of
//     the error text, so that callers can recognise a repeated failure by
//     its text and report it once.
//
// NewClient builds the client both pollers use by default: TLS 1.2 at
// least, optionally CAs of its own (which may change while it serves), and
// no redirect from https to http.
//
// The package holds no state: Get is safe for concurrent use with a
// client that is.
package httpfetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/internal/printable"
)

// Sentinel errors of package httpfetch. They are causes, meant to be
// wrapped under a caller's own category (jwks.ErrFetch, remote.ErrFetch),
// so their messages carry no package prefix.
var (
	// ErrStatus is wrapped when the server answers a status other than
	// 200 (or 304 to a conditional request).
	ErrStatus = errors.New("unexpected status")
	// ErrTooLarge is wrapped when the body is, or announces to be, larger
	// than Request.MaxBytes.
	ErrTooLarge = errors.New("response too large")
)

// DefaultMaxBytes is the body limit when Request.MaxBytes is 0.
const DefaultMaxBytes = 1 << 20

// drainBytes is how much of an unwanted body is read so that the
// connection can be reused.
const drainBytes = 4 << 10

// maxRedirects is how many redirects NewClient's client follows.
const maxRedirects = 5

// Request describes one GET. Every zero value but URL's means the
// documented default.
type Request struct {
	// URL is the document's absolute http(s) URL (required). Errors name
	// it by Redact only.
	URL string
	// Header is added to the request (Accept, Authorization, ...). It is
	// copied, never modified, and never appears in errors. If-None-Match is
	// set from ETag after it.
	Header http.Header
	// ETag, when set, is sent as If-None-Match; a 304 answer is then a
	// success with NotModified set.
	ETag string
	// MaxBytes refuses a body larger than this; 0 means DefaultMaxBytes.
	MaxBytes int64
	// Timeout bounds the whole exchange, body included; 0 means no bound
	// beyond ctx and the client's own.
	Timeout time.Duration
}

// Response is a successful Get's result.
type Response struct {
	// Body is the document; nil when NotModified.
	Body []byte
	// ETag is the response's ETag; after a 304 without one, the request's.
	ETag string
	// NotModified is true when the server answered 304 Not Modified to a
	// conditional request.
	NotModified bool
	// Header is the response's header, for callers that read more of it
	// (Cache-Control, say).
	Header http.Header
}

// StatusError is the error Get and Post wrap when the server answers a
// status they do not take as a success. errors.Is(err, ErrStatus) holds
// for it; errors.As finds it for the code and Retry-After.
type StatusError struct {
	// Code is the status code (503); Status the status line's text ("503
	// Service Unavailable").
	Code   int
	Status string
	// RetryAfter is the server's Retry-After (delay-seconds or an HTTP
	// date, as a duration from when the answer arrived); 0 when absent,
	// unparsable or in the past.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string { return ErrStatus.Error() + " " + e.Status }

// Is makes errors.Is(err, ErrStatus) hold.
func (e *StatusError) Is(target error) bool { return target == ErrStatus }

// maxStatusBytes bounds a StatusError's Status: the reason phrase is the
// server's text, up to the client's whole header limit (10 MiB), and it
// reaches every log line and status document naming the failure, once an
// attempt.
const maxStatusBytes = 128

// statusError drains resp's body (up to drainBytes) and describes resp.
func statusError(resp *http.Response) *StatusError {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	ra, _ := ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return &StatusError{Code: resp.StatusCode, Status: boundStatus(resp.Status), RetryAfter: ra}
}

// boundStatus cuts a status line's text to maxStatusBytes (printable.Cut).
func boundStatus(s string) string { return printable.Cut(s, maxStatusBytes) }

// ParseRetryAfter reads a Retry-After value (RFC 9110, 10.2.3): a number of
// seconds or an HTTP date, which it returns as the wait from now. ok is
// false when v is empty or neither; a date in the past is a wait of 0.
// Callers bound the result: a server may ask for any wait.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// send makes one request of method with body (nil for none), bounded by
// timeout (0: none beyond ctx), and returns the response for the caller to
// read and close, and a function that releases the timeout; errors name
// the URL as where does.
func send(ctx context.Context, client *http.Client, method, rawURL string, header http.Header, body []byte,
	timeout time.Duration) (*http.Response, context.CancelFunc, error) {
	where := method + " " + Redact(rawURL)
	cancel := context.CancelFunc(func() {})
	if timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, timeout)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	hr, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		cancel()
		// The parse error would quote the whole URL: leave it out.
		return nil, nil, fmt.Errorf("%s: invalid URL", where)
	}
	for k, v := range header {
		hr.Header[k] = append([]string(nil), v...)
	}
	resp, err := client.Do(hr)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("%s: %w", where, transportError(err))
	}
	return resp, cancel, nil
}

// Get fetches req.URL with client (which must not be nil), as the package
// doc describes. Errors name the URL by Redact; they wrap a *StatusError
// (ErrStatus), ErrTooLarge, or the transport's error (a *net.OpError, a
// TLS error, context.DeadlineExceeded, ...), which errors.Is and errors.As
// still find. Get is safe for concurrent use when client is.
func Get(ctx context.Context, client *http.Client, req Request) (Response, error) {
	where := "GET " + Redact(req.URL)
	limit := req.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	header := req.Header
	if req.ETag != "" {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("If-None-Match", req.ETag)
	}
	resp, cancel, err := send(ctx, client, http.MethodGet, req.URL, header, nil, req.Timeout)
	if err != nil {
		return Response{}, err
	}
	defer cancel()
	defer resp.Body.Close()
	res := Response{ETag: resp.Header.Get("ETag"), Header: resp.Header}
	switch {
	case resp.StatusCode == http.StatusNotModified && req.ETag != "":
		res.NotModified = true
		if res.ETag == "" {
			res.ETag = req.ETag
		}
		return res, nil
	case resp.StatusCode != http.StatusOK:
		return Response{}, fmt.Errorf("%s: %w", where, statusError(resp))
	case resp.ContentLength > limit:
		return Response{}, fmt.Errorf("%s: %w: content length %d over %d bytes", where, ErrTooLarge, resp.ContentLength, limit)
	}
	res.Body, err = io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return Response{}, fmt.Errorf("%s: reading body: %w", where, err)
	}
	if int64(len(res.Body)) > limit {
		return Response{}, fmt.Errorf("%s: %w: body over %d bytes", where, ErrTooLarge, limit)
	}
	return res, nil
}

// PostRequest describes one POST of a whole body. Every zero value but
// URL's and Body's means the documented default.
type PostRequest struct {
	// URL is the absolute http(s) URL to post to (required). Errors name
	// it by Redact only.
	URL string
	// Header is the request's header (Content-Type, Content-Encoding,
	// Authorization, ...). It is copied, never modified, and never appears
	// in errors.
	Header http.Header
	// Body is sent as is, with its length; it is only read, also by
	// retries of the client (redirects), so it must not change until Post
	// returns.
	Body []byte
	// Timeout bounds the whole exchange; 0 means no bound beyond ctx and
	// the client's own.
	Timeout time.Duration
}

// Post sends req.Body to req.URL with client (which must not be nil). Any
// 2xx answer is a success; its body is drained (up to 4 KiB) and
// discarded. Errors are as Get's: a *StatusError for any other status,
// else the transport's error, the URL named by Redact only. Post does not
// retry: the caller decides what a failure means. It is safe for
// concurrent use when client is.
func Post(ctx context.Context, client *http.Client, req PostRequest) error {
	body := req.Body
	if body == nil {
		body = []byte{}
	}
	resp, cancel, err := send(ctx, client, http.MethodPost, req.URL, req.Header, body, req.Timeout)
	if err != nil {
		return err
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("POST %s: %w", Redact(req.URL), statusError(resp))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
	return nil
}

// Redact returns rawURL with only its scheme, host (and port) and path:
// no user information, query or fragment. It returns "" when rawURL does
// not parse. Use it wherever a configured URL is logged or shown.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String()
}

// ValidURL reports whether rawURL is an absolute http or https URL with a
// host, the only kind Get is meant for.
func ValidURL(rawURL string) bool {
	u, err := url.Parse(rawURL)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// NewClient returns a client of its own for a poller: a clone of
// http.DefaultTransport that requires TLS 1.2 at least and trusts the CAs
// roots returns (nil, or a nil roots, means the system roots), and that
// follows at most 5 redirects, never one from https to http. roots is
// asked before every request; when it returns another pool (a CA file
// rotated), later requests go through a new transport trusting it, and the
// old one's idle connections are closed. The caller owns the client and
// should close its idle connections when done.
func NewClient(roots func() *x509.CertPool) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	var rt http.RoundTripper = base
	if roots != nil {
		rt = &rootsTransport{roots: roots, base: base}
	}
	return &http.Client{Transport: rt, CheckRedirect: checkRedirect}
}

// rootsTransport sends each request through a transport trusting the CAs
// in service, made anew when they change.
type rootsTransport struct {
	roots func() *x509.CertPool
	base  *http.Transport // cloned for each pool

	mu   sync.Mutex
	pool *x509.CertPool // what tr trusts
	tr   *http.Transport
}

func (t *rootsTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.current().RoundTrip(req)
}

// current is the transport trusting the pool in service.
func (t *rootsTransport) current() *http.Transport {
	t.mu.Lock()
	defer t.mu.Unlock()
	pool := t.roots() // under the lock: a pool read before a swap never undoes it
	if t.tr == nil || pool != t.pool {
		if t.tr != nil {
			// Requests in flight finish on their connections; idle ones,
			// trusted under the old CAs, are not used again (those that
			// go idle later close after the transport's IdleConnTimeout).
			t.tr.CloseIdleConnections()
		}
		t.tr, t.pool = t.base.Clone(), pool
		t.tr.TLSClientConfig.RootCAs = pool
	}
	return t.tr
}

// CloseIdleConnections closes the idle connections of the transport in
// service (http.Client.CloseIdleConnections calls it).
func (t *rootsTransport) CloseIdleConnections() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tr != nil {
		t.tr.CloseIdleConnections()
	}
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("redirect from https to http refused")
	}
	// The caller's headers may be credentials for the first host (a bundle
	// server's API key): another host gets only the harmless ones. (The
	// client drops Authorization and Cookie itself, but not custom names.)
	// Names are read canonical and deleted as keyed: a caller's header map
	// may hold "private-token", which Header.Del would not find.
	if req.URL.Host != via[0].URL.Host {
		for name := range req.Header {
			switch http.CanonicalHeaderKey(name) {
			case "Accept", "Accept-Encoding", "User-Agent", "If-None-Match", "Content-Type", "Content-Encoding":
			default:
				delete(req.Header, name)
			}
		}
	}
	return nil
}

// transportError returns the cause of a failed client.Do without the
// *url.Error around it, which names the (redirected) URL in full, and
// without the local address of a failed connection.
func transportError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Source != nil {
		msg := err.Error()
		if local := op.Source.String() + "->"; strings.Contains(msg, local) {
			return &reworded{msg: strings.Replace(msg, local, "", 1), err: err}
		}
	}
	return err
}

// reworded is err with another message.
type reworded struct {
	msg string
	err error
}

func (e *reworded) Error() string { return e.msg }
func (e *reworded) Unwrap() error { return e.err }
