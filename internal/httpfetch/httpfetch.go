// Package httpfetch performs the one HTTP exchange Verdict's pollers share:
// a conditional GET of a whole document (a policy bundle, a JSON Web Key
// Set, an OpenID Connect discovery document), bounded in time and size.
//
// What it guarantees, for every caller:
//
//   - Conditional. With Request.ETag set, the request carries If-None-Match
//     and a 304 Not Modified is a success without a body
//     (Response.NotModified). A 304 to a request without ETag is an
//     unexpected status.
//   - Strict. Only 200 and that 304 are successes; any other status is an
//     error wrapping ErrStatus, after at most 4 KiB of its body were
//     drained so that the connection can be reused.
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
// least, optionally its own CA file, and no redirect from https to http.
//
// The package holds no state: Get is safe for concurrent use with a
// client that is.
package httpfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
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

// Get fetches req.URL with client (which must not be nil), as the package
// doc describes. Errors name the URL by Redact; they wrap ErrStatus,
// ErrTooLarge, or the transport's error (a *net.OpError, a TLS error,
// context.DeadlineExceeded, ...), which errors.Is and errors.As still
// find. Get is safe for concurrent use when client is.
func Get(ctx context.Context, client *http.Client, req Request) (Response, error) {
	where := "GET " + Redact(req.URL)
	limit := req.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout)
		defer cancel()
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, req.URL, nil)
	if err != nil {
		// The parse error would quote the whole URL: leave it out.
		return Response{}, fmt.Errorf("%s: invalid URL", where)
	}
	for k, v := range req.Header {
		hr.Header[k] = append([]string(nil), v...)
	}
	if req.ETag != "" {
		hr.Header.Set("If-None-Match", req.ETag)
	}
	resp, err := client.Do(hr)
	if err != nil {
		return Response{}, fmt.Errorf("%s: %w", where, transportError(err))
	}
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
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, drainBytes))
		return Response{}, fmt.Errorf("%s: %w %s", where, ErrStatus, resp.Status)
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
// http.DefaultTransport that requires TLS 1.2 at least and trusts the PEM
// CA certificates in caFile ("" means the system roots), and that follows
// at most 5 redirects, never one from https to http. The caller owns it
// and should close its idle connections when done.
func NewClient(caFile string) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca file %s: no PEM certificate found", caFile)
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return &http.Client{Transport: tr, CheckRedirect: checkRedirect}, nil
}

func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errors.New("too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("redirect from https to http refused")
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
