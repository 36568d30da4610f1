package decisionlog

import (
	"cmp"
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// Defaults for UploadOptions fields left zero, and for Options.FlushDeadline.
const (
	DefaultUploadInterval   = 5 * time.Second
	DefaultMaxBatchRecords  = 1000
	DefaultMaxBatchBytes    = 1 << 20
	DefaultMaxBufferRecords = 10000
	DefaultMaxBufferBytes   = 16 << 20
	DefaultUploadTimeout    = 10 * time.Second
	DefaultMaxAttempts      = 10
	DefaultMinBackoff       = time.Second
	DefaultMaxBackoff       = time.Minute
	DefaultUploadJitter     = 0.2
	DefaultFlushTimeout     = 5 * time.Second
)

// UploadOptions configures shipping records to an HTTP collector in
// batches: gzip'd JSON arrays of records, each encoded as the file output
// writes it, POSTed with Content-Type: application/json and
// Content-Encoding: gzip. Every zero value but URL's means the documented
// default.
type UploadOptions struct {
	// URL is the collector's absolute http(s) URL (required). Logs and
	// errors name it by httpfetch.Redact only.
	URL string
	// Header is added to every request (Authorization, say); HeaderFunc,
	// when set, is called before every request for more (set over Header's),
	// so that a credential read from a file can rotate. A HeaderFunc error
	// fails that attempt like a network error; it must not contain the
	// values. Header values are never logged. Content-Type and
	// Content-Encoding are the Logger's.
	Header     http.Header
	HeaderFunc func() (http.Header, error)
	// Interval is the longest a record waits in the buffer before its batch
	// is sent; 0 means 5 s. A batch also leaves as soon as it is full.
	Interval time.Duration
	// MaxBatchRecords and MaxBatchBytes bound one batch: records, and bytes
	// of the JSON array before compression; 0 means 1000 and 1 MiB. A
	// record that does not fit in a batch on its own is dropped
	// (DropTooLarge). MaxBatchBytes must be at least Options.MaxRecordBytes
	// (with its default); a record within that cap that would not fit
	// in a batch of its own (the array's brackets included) is sent, and
	// written, without its input, as one over the cap is.
	MaxBatchRecords int
	MaxBatchBytes   int
	// MaxBufferRecords and MaxBufferBytes bound what waits for the
	// collector, the batch being sent included; 0 means 10,000 records and
	// 16 MiB. A record that finds the buffer full is dropped
	// (DropBufferFull). Each must be at least its batch counterpart.
	MaxBufferRecords int
	MaxBufferBytes   int
	// Timeout bounds one request; 0 means 10 s.
	Timeout time.Duration
	// MaxAttempts is how many times a batch is sent before it is given up
	// (DropUploadFailed) when the collector keeps failing (a network
	// error, a 5xx or 429); 0 means 10. Any other status is not retried.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the exponential wait between
	// attempts (0: 1 s and 1 min); Jitter spreads each by up to ±Jitter of
	// its length (0: 0.2; negative: none; must be below 1). A Retry-After
	// from the collector lengthens the wait, up to MaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	Jitter     float64
	// Client sends the requests; nil means a client of the Logger's own
	// (TLS 1.2 at least, RootCAs when set, no redirects followed: a 3xx is
	// an answer, not retried).
	Client *http.Client
	// RootCAs returns the CAs trusted for the collector instead of the
	// system roots, asked before every request (a rotated CA file is
	// trusted from the next connection on); only for the Logger's own
	// client (with Client set, an error).
	RootCAs func() *x509.CertPool
	// After is the timer of the waits between attempts; nil means a real
	// timer. Tests inject one to see the waits and skip them.
	After func(d time.Duration) <-chan time.Time
}

// withDefaults validates o and fills in its defaults; maxRecord is the
// Logger's MaxRecordBytes.
func (o UploadOptions) withDefaults(maxRecord int) (UploadOptions, error) {
	if !httpfetch.ValidURL(o.URL) {
		return o, fmt.Errorf("%w: Upload.URL %q must be an absolute http(s) URL", ErrOptions, httpfetch.Redact(o.URL))
	}
	if o.Interval < 0 || o.MaxBatchRecords < 0 || o.MaxBatchBytes < 0 || o.MaxBufferRecords < 0 ||
		o.MaxBufferBytes < 0 || o.Timeout < 0 || o.MaxAttempts < 0 || o.MinBackoff < 0 || o.MaxBackoff < 0 || o.Jitter >= 1 {
		return o, fmt.Errorf("%w: negative Upload duration, size or count, or jitter ≥ 1", ErrOptions)
	}
	if o.Client != nil && o.RootCAs != nil {
		// Never silently: the CAs would not be the ones trusted.
		return o, fmt.Errorf("%w: Upload.RootCAs are for the Logger's own client; configure the injected Client's TLS instead", ErrOptions)
	}
	o.Interval = cmp.Or(o.Interval, DefaultUploadInterval)
	o.MaxBatchRecords = cmp.Or(o.MaxBatchRecords, DefaultMaxBatchRecords)
	o.MaxBatchBytes = cmp.Or(o.MaxBatchBytes, DefaultMaxBatchBytes)
	o.MaxBufferRecords = cmp.Or(o.MaxBufferRecords, DefaultMaxBufferRecords)
	o.MaxBufferBytes = cmp.Or(o.MaxBufferBytes, DefaultMaxBufferBytes)
	o.Timeout = cmp.Or(o.Timeout, DefaultUploadTimeout)
	o.MaxAttempts = cmp.Or(o.MaxAttempts, DefaultMaxAttempts)
	o.MinBackoff = cmp.Or(o.MinBackoff, DefaultMinBackoff)
	o.MaxBackoff = max(cmp.Or(o.MaxBackoff, DefaultMaxBackoff), o.MinBackoff)
	if o.Jitter == 0 {
		o.Jitter = DefaultUploadJitter
	}
	o.Jitter = max(o.Jitter, 0)
	switch {
	case o.MaxBatchBytes < maxRecord:
		return o, fmt.Errorf("%w: Upload.MaxBatchBytes (%d) is below MaxRecordBytes (%d): records within the cap would not fit in a batch",
			ErrOptions, o.MaxBatchBytes, maxRecord)
	case o.MaxBufferRecords < o.MaxBatchRecords:
		return o, fmt.Errorf("%w: Upload.MaxBufferRecords (%d) is below MaxBatchRecords (%d)", ErrOptions, o.MaxBufferRecords, o.MaxBatchRecords)
	case o.MaxBufferBytes < o.MaxBatchBytes:
		return o, fmt.Errorf("%w: Upload.MaxBufferBytes (%d) is below MaxBatchBytes (%d)", ErrOptions, o.MaxBufferBytes, o.MaxBatchBytes)
	}
	return o, nil
}
