package decisionlog

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verdict-pdp/verdict/internal/backoff"
	"github.com/verdict-pdp/verdict/internal/httpfetch"
)

// uploader ships encoded records to the collector. The Logger's writer
// goroutine offers records (offer, which never blocks); run, started by the
// Logger's Run, batches and sends them, one batch at a time, oldest first.
//
// The buffer holds every record not yet delivered or given up, the batch
// in flight included, so that its bounds bound the memory held for the
// collector whatever the collector does.
type uploader struct {
	opts   UploadOptions
	client *http.Client
	own    bool // client is the uploader's: close its idle connections at the end
	header http.Header
	retry  backoff.Exponential
	log    *slog.Logger
	drop   func(DropReason, int)
	where  string // the URL, redacted

	uploaded atomic.Uint64
	latency  histogram
	zw       *gzip.Writer // run's goroutine only

	kick chan struct{} // a record arrived in an empty buffer, or a batch filled

	mu        sync.Mutex
	q         []pending // oldest first; the batch in flight, if any, at the head
	size      int       // Σ len+1 over q: the JSON array of all of q is size+1 bytes
	abandoned bool      // the flush deadline passed: offers count as upload_failed
}

// pending is a record waiting for the collector.
type pending struct {
	rec []byte
	at  time.Time // when it was offered
}

func newUploader(o UploadOptions, log *slog.Logger, drop func(DropReason, int)) (*uploader, error) {
	u := &uploader{opts: o, client: o.Client, log: log, drop: drop, where: httpfetch.Redact(o.URL),
		retry: backoff.Exponential{Min: o.MinBackoff, Max: o.MaxBackoff, Jitter: o.Jitter},
		kick:  make(chan struct{}, 1), latency: newHistogram(uploadBuckets)}
	if u.client == nil {
		c := httpfetch.NewClient(o.RootCAs)
		// A redirected POST may turn into a GET (301, 302, 303) whose 200
		// would pass for a delivery: redirects are answers, not followed.
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		u.client, u.own = c, true
	}
	u.header = o.Header.Clone()
	if u.header == nil {
		u.header = http.Header{}
	}
	u.header.Set("Content-Type", "application/json")
	u.header.Set("Content-Encoding", "gzip")
	return u, nil
}

// offer queues an encoded record (copied) for the collector, or drops it:
// too large for any batch, or the buffer full. It never blocks.
func (u *uploader) offer(rec []byte) {
	cost := len(rec) + 1
	if len(rec)+batchFraming > u.opts.MaxBatchBytes {
		u.drop(DropTooLarge, 1)
		return
	}
	u.mu.Lock()
	switch {
	case u.abandoned:
		u.mu.Unlock()
		u.drop(DropUploadFailed, 1)
		return
	case len(u.q) >= u.opts.MaxBufferRecords || u.size+cost > u.opts.MaxBufferBytes:
		u.mu.Unlock()
		u.drop(DropBufferFull, 1)
		return
	}
	wasEmpty := len(u.q) == 0
	u.q = append(u.q, pending{rec: bytes.Clone(rec), at: time.Now()})
	u.size += cost
	full := u.fullLocked()
	u.mu.Unlock()
	if wasEmpty || full {
		select {
		case u.kick <- struct{}{}:
		default:
		}
	}
}

// batchFraming is what a batch of one record adds to it: the JSON array's
// brackets. A record longer than MaxBatchBytes less this fits in no batch.
const batchFraming = len("[]")

// fullLocked reports whether the buffer holds at least a full batch.
func (u *uploader) fullLocked() bool {
	return len(u.q) >= u.opts.MaxBatchRecords || u.size+1 > u.opts.MaxBatchBytes
}

// run sends batches until ctx is done and inputDone is closed (the writer
// offers nothing more), then sends what is left at once, retrying failures
// until the flush deadline (what deadline returns, called once when ctx is
// done). What is not delivered by then is counted as upload_failed.
func (u *uploader) run(ctx context.Context, inputDone <-chan struct{}, deadline func() time.Time) {
	if u.own {
		defer u.client.CloseIdleConnections()
	}
	// hard ends at the flush deadline: it bounds requests and waits from
	// the moment ctx is done.
	hard, abort := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-ctx.Done():
		case <-hard.Done():
			return
		}
		t := time.NewTimer(time.Until(deadline()))
		defer t.Stop()
		select {
		case <-t.C:
			abort()
		case <-hard.Done():
		}
	}()
	defer func() {
		abort()
		wg.Wait()
	}()
	for {
		n := u.next(ctx, hard, inputDone)
		if n == 0 {
			return
		}
		u.send(ctx, hard, n)
	}
}

// next waits until a batch is due and returns its length: when the
// buffer holds a full batch, when its oldest record has waited Interval,
// or, while flushing (ctx done), as soon as the writer has handed over its
// last records (inputDone closed). It returns 0 when there is nothing
// more to send (inputDone closed and the buffer empty) or the flush
// deadline has passed (everything left then counted as upload_failed).
func (u *uploader) next(ctx, hard context.Context, inputDone <-chan struct{}) int {
	for {
		if hard.Err() != nil {
			u.abandon()
			return 0
		}
		u.mu.Lock()
		n, full := len(u.q), u.fullLocked()
		var oldest time.Time
		if n > 0 {
			oldest = u.q[0].at
		}
		u.mu.Unlock()
		if n == 0 {
			select {
			case <-inputDone:
				if u.empty() {
					return 0
				}
			case <-u.kick:
			case <-hard.Done():
			}
			continue
		}
		wait := time.Until(oldest.Add(u.opts.Interval))
		if full || wait <= 0 || ctx.Err() != nil && closed(inputDone) {
			return u.batchLen()
		}
		// While flushing, a partial batch waits only for the writer to
		// finish handing over the last records.
		stop, flush := ctx.Done(), (<-chan struct{})(nil)
		if ctx.Err() != nil {
			stop, flush = nil, inputDone
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-u.kick:
		case <-stop:
		case <-flush:
		case <-hard.Done():
		}
		t.Stop()
	}
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (u *uploader) empty() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.q) == 0
}

// batchLen is how many records from the head make the next batch.
func (u *uploader) batchLen() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n, size := 0, 1
	for _, p := range u.q {
		if n == u.opts.MaxBatchRecords || size+len(p.rec)+1 > u.opts.MaxBatchBytes {
			break
		}
		n, size = n+1, size+len(p.rec)+1
	}
	return max(n, 1) // offer let in only records that fit a batch alone
}

// send delivers the first n records, retrying as UploadOptions says, and
// then removes them from the buffer, delivered or given up.
func (u *uploader) send(ctx, hard context.Context, n int) {
	u.mu.Lock()
	batch := u.q[:n:n]
	u.mu.Unlock()
	body, err := u.encode(batch)
	if err != nil { // gzip into memory does not fail; but never lose count
		u.giveUp(hard, n, "encode", err)
		return
	}
	for attempt := 1; ; attempt++ {
		err := u.post(hard, body)
		if err == nil {
			u.remove(n)
			u.uploaded.Add(uint64(n))
			return
		}
		retryAfter, retry := retryable(err)
		switch {
		case hard.Err() != nil:
			u.giveUp(hard, n, "flush deadline passed", err)
			return
		case !retry:
			u.giveUp(hard, n, "refused", err)
			return
		case attempt >= u.opts.MaxAttempts:
			u.giveUp(hard, n, "attempts exhausted", err)
			return
		}
		wait := max(u.retry.Delay(attempt), min(retryAfter, u.opts.MaxBackoff))
		u.log.LogAttrs(hard, slog.LevelWarn, "decision log upload failed",
			slog.String("url", u.where), slog.String("error", err.Error()),
			slog.Int("attempt", attempt), slog.Int("records", n), slog.Duration("retry_in", wait))
		// Once ctx is done the batch goes at once (the flush), then waits
		// again between attempts, until the flush deadline.
		var wake <-chan struct{}
		if ctx.Err() == nil {
			wake = ctx.Done()
		}
		if !backoff.Wait(hard, wait, u.opts.After, wake) {
			u.giveUp(hard, n, "flush deadline passed", err)
			return
		}
	}
}

// post sends one batch, and times it.
func (u *uploader) post(ctx context.Context, body []byte) error {
	header := u.header
	if u.opts.HeaderFunc != nil {
		more, err := u.opts.HeaderFunc()
		if err != nil {
			return fmt.Errorf("request headers: %w", err)
		}
		header = header.Clone()
		for k, vs := range more {
			header[k] = vs
		}
		header.Set("Content-Type", "application/json")
		header.Set("Content-Encoding", "gzip")
	}
	start := time.Now()
	err := httpfetch.Post(ctx, u.client, httpfetch.PostRequest{URL: u.opts.URL, Header: header, Body: body, Timeout: u.opts.Timeout})
	u.latency.observe(time.Since(start))
	return err
}

// retryable says whether a failed POST is worth another attempt (a
// transport error, a 5xx, a 429), and the collector's Retry-After.
func retryable(err error) (retryAfter time.Duration, ok bool) {
	var se *httpfetch.StatusError
	if errors.As(err, &se) {
		return se.RetryAfter, se.Code == http.StatusTooManyRequests || se.Code >= 500
	}
	return 0, true
}

// giveUp drops the first n records as upload_failed.
func (u *uploader) giveUp(ctx context.Context, n int, why string, err error) {
	u.remove(n)
	u.drop(DropUploadFailed, n)
	u.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelError, "decision log batch dropped",
		slog.String("url", u.where), slog.String("why", why), slog.String("error", err.Error()), slog.Int("records", n))
}

// abandon drops everything buffered, and everything offered from now on,
// as upload_failed: the flush deadline has passed.
func (u *uploader) abandon() {
	u.mu.Lock()
	n := len(u.q)
	clear(u.q)
	u.q, u.size, u.abandoned = nil, 0, true
	u.mu.Unlock()
	if n > 0 {
		u.drop(DropUploadFailed, n)
		u.log.LogAttrs(context.Background(), slog.LevelError, "decision log batch dropped",
			slog.String("url", u.where), slog.String("why", "flush deadline passed"), slog.Int("records", n))
	}
}

// remove takes the first n records out of the buffer.
func (u *uploader) remove(n int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, p := range u.q[:n] {
		u.size -= len(p.rec) + 1
	}
	clear(u.q[:n])
	u.q = u.q[n:]
}

// encode returns the records as a gzip'd JSON array, in a new slice (the
// transport may still read a body after a failed request returns).
func (u *uploader) encode(batch []pending) ([]byte, error) {
	var buf bytes.Buffer
	if u.zw == nil {
		u.zw = gzip.NewWriter(&buf)
	} else {
		u.zw.Reset(&buf)
	}
	zw := u.zw
	b := make([]byte, 0, 64<<10)
	b = append(b, '[')
	for i, p := range batch {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, p.rec...)
		if len(b) >= 32<<10 {
			if _, err := zw.Write(b); err != nil {
				return nil, err
			}
			b = b[:0]
		}
	}
	b = append(b, ']')
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
