// Package decisionlog writes Verdict's decision log: one JSON object per
// line for every decision, to stdout, a file, or any io.Writer, and/or in
// batches to an HTTP collector (Options.Upload).
//
// A Logger never blocks the request that logs: Log puts the record in a
// buffer bounded in records and in estimated memory (Record.MemoryBytes:
// an input of a request's size holds many times that in memory) and
// returns at once; a single writer goroutine, run by Run,
// encodes each record once and writes it in order. When the buffer is full
// the record is dropped and counted (Stats, by DropReason), and Run logs a
// periodic warning while drops continue: the log never grows without bound
// and never slows decisions. With Options.MaxRecordsPerSecond, records
// logged faster than that are dropped too (rate_limited): what the log
// writes is then bounded in time as well.
//
// # Uploading
//
// With Options.Upload, the writer goroutine also hands each encoded record
// (the same bytes the file gets) to an upload buffer of its own, bounded in
// records and bytes, without waiting: a record that finds it full is
// dropped for the upload only (buffer_full), so a slow or stuck collector
// never holds up the file output, nor Log. A goroutine of Run's sends the
// buffer in batches, gzip'd JSON arrays POSTed one at a time, oldest first:
// a batch leaves when it is full (UploadOptions.MaxBatchRecords,
// MaxBatchBytes) or when its oldest record has waited Interval. A network
// error, a 5xx or a 429 is retried with exponential backoff and jitter
// (longer when the collector sends Retry-After), up to MaxAttempts; any
// other status drops the batch (upload_failed), as does running out of
// attempts. A record larger than a batch may be is dropped (too_large).
//
// When Run's context is done, Run writes what is buffered to the Writer
// and sends what is left to the collector at once, retrying until the
// flush deadline (Options.FlushDeadline); what is still unsent then is
// counted as upload_failed, and Run returns.
//
// A record never carries the raw bearer token: the decision, who asked
// (subject and caller IDs), what for (the action), and the input document
// the policy saw (verified claims, caller, action, resource, context), so
// that a decision can be replayed against another policy. Options.Mask
// removes fields of the input and Options.Hash replaces them by a hash;
// a record over Options.MaxRecordBytes keeps everything but its input, and
// the truncation is counted (Truncated).
package decisionlog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"golang.org/x/time/rate"

	"github.com/verdict-pdp/verdict/internal/jsonw"
	"github.com/verdict-pdp/verdict/internal/membudget"
)

// Defaults for Options fields left zero.
const (
	DefaultBuffer       = 4096
	DefaultWarnInterval = 10 * time.Second
)

// ErrOptions is wrapped by New's errors.
var ErrOptions = errors.New("decisionlog: invalid options")

// Action is what a decision was about, as the log shows it.
type Action struct {
	Name   string
	Method string
	Path   string
}

// Record is one decision, as logged. It is a plain value; slices in it must
// not be modified after Log is called.
type Record struct {
	// DecisionID is the decision's ID (decision_id in the answer).
	DecisionID string
	// API names the interface the decision was asked through: decide,
	// check, authzen or ext_authz; empty when unknown.
	API string
	// TraceID is the W3C trace ID (32 lowercase hex digits) of the
	// decision's span when the server traces; empty otherwise.
	TraceID string
	// Time is when the decision was made.
	Time time.Time
	// Allow is the decision.
	Allow bool
	// Reasons are the decision's reasons.
	Reasons []string
	// Revision names the policy snapshot that decided; empty when none did.
	Revision string
	// SubjectID and CallerID say who asked; empty when anonymous.
	SubjectID string
	CallerID  string
	// Action is what was asked.
	Action Action
	// Latency is how long the decision took.
	Latency time.Duration
	// Error is the error code when the decision failed (policy_error,
	// not_ready, invalid_request); empty for an allow or a deny.
	Error string
	// Input is the input document the decision was made on; nil when none
	// was (a request refused before evaluation). It must not be modified.
	Input ast.Value
	// Shadow is the shadow policy's answer to the same input, set only
	// when it differs from the live one (a flip, or a shadow error).
	Shadow *Shadow
}

// Shadow is a shadow policy's answer, as logged beside the live one.
type Shadow struct {
	// Revision names the shadow snapshot that answered.
	Revision string
	// Allow and Reasons are its answer.
	Allow   bool
	Reasons []string
	// Error is its error code (policy_error); empty when it answered.
	Error string
}

// Options configures a Logger. Every zero value means the documented default.
type Options struct {
	// Writer receives the JSON lines. The Logger buffers them and writes
	// them out whenever its buffer runs empty or fills (64 KiB) and when
	// Run returns, whole lines in each Write; it never closes Writer. A
	// failed Write does not stop the next (a file that takes writes again,
	// or was reopened, gets the records logged from then on). Nil means no file output: Upload is then required.
	Writer io.Writer
	// Upload, when set, ships every record to an HTTP collector too (see
	// the package doc).
	Upload *UploadOptions
	// FlushDeadline is called once Run's context is done, for the time by
	// which the records still buffered for the collector must have been
	// sent (a server passes what is left of its shutdown budget); nil
	// means 5 s from then.
	FlushDeadline func() time.Time
	// Buffer is how many records may wait for the writer; 0 means 4096.
	Buffer int
	// MaxQueueBytes bounds the estimated memory (Record.MemoryBytes) of
	// the records waiting for the writer; a record that would take them
	// over is dropped as buffer_full. 0 means DefaultMaxQueueBytes.
	MaxQueueBytes int64
	// WarnInterval is how often, at most, Run warns that records were
	// dropped; 0 means 10 s.
	WarnInterval time.Duration
	// Logger receives the drop warnings and write errors; nil discards them.
	Logger *slog.Logger
	// Mask lists JSON pointers, relative to the record, of input fields
	// to remove ("/input/subject/claims/email"); Hash lists those to
	// replace by "sha256:" and the hash of their JSON. Each must start
	// with /input/.
	Mask, Hash []string
	// HashKey, when set, makes Hash write "hmac-sha256:" and the
	// HMAC-SHA256 of the JSON under the key instead: the same value still
	// hashes the same in every record (records can be joined on it), but
	// whoever reads the log cannot confirm a guess (an email address)
	// without the key. At least MinHashKeyBytes; only with Hash.
	HashKey []byte
	// MaxRecordBytes bounds one record; a record whose input would take it
	// over is written without its input ("input_truncated": true) and
	// counted in Truncated. 0 means 64 KiB; at most LargestRecordBytes.
	// With Upload, a record that would not fit in a batch of its own
	// (Upload.MaxBatchBytes, the array's two brackets included) is
	// written without its input too.
	MaxRecordBytes int
	// MaxRecordsPerSecond bounds how fast records are taken, with bursts
	// of up to one second's worth; records over it are dropped
	// (rate_limited). It bounds what clients can make the log write (each
	// record at most MaxRecordBytes), at the price of the records of a
	// flood and of everyone deciding during it. 0 means no bound.
	MaxRecordsPerSecond float64
}

// Logger is a decision log. Log is safe for concurrent use and never
// blocks; Run must be called (once) for records to be written.
type Logger struct {
	out       *output   // nil: no file output
	up        *uploader // nil: no upload
	flushBy   func() time.Time
	ch        chan queued
	queuedMem *membudget.Budget
	// stop is held for reading by Log while it queues, and for writing by
	// Run when it stops taking records; stopped is then true, and Log
	// counts what comes later as dropped (stopped) instead of queueing
	// it where nothing reads.
	stop      sync.RWMutex
	stopped   bool
	warn      time.Duration
	log       *slog.Logger
	shape     *inputShaper
	maxBytes  int
	limit     *rate.Limiter // nil: no Options.MaxRecordsPerSecond
	drops     [numDropReasons]atomic.Uint64
	written   atomic.Uint64
	truncated atomic.Uint64
}

// New returns a Logger writing to opts.Writer and/or uploading as
// opts.Upload says. It starts nothing and performs no I/O.
func New(opts Options) (*Logger, error) {
	if opts.Writer == nil && opts.Upload == nil {
		return nil, fmt.Errorf("%w: Writer or Upload is required", ErrOptions)
	}
	if opts.Buffer < 0 || opts.WarnInterval < 0 || opts.MaxRecordBytes < 0 || opts.MaxQueueBytes < 0 {
		return nil, fmt.Errorf("%w: negative buffer, interval or record size", ErrOptions)
	}
	if !(opts.MaxRecordsPerSecond >= 0) || math.IsInf(opts.MaxRecordsPerSecond, 1) {
		return nil, fmt.Errorf("%w: MaxRecordsPerSecond %v is not a finite rate of 0 or more", ErrOptions, opts.MaxRecordsPerSecond)
	}
	if opts.MaxRecordBytes > LargestRecordBytes {
		return nil, fmt.Errorf("%w: MaxRecordBytes %d is over %d, the longest line verdict replay reads", ErrOptions, opts.MaxRecordBytes, LargestRecordBytes)
	}
	shape, err := newInputShaper(opts.Mask, opts.Hash, opts.HashKey)
	if err != nil {
		return nil, err
	}
	l := &Logger{
		flushBy:   opts.FlushDeadline,
		ch:        make(chan queued, cmp.Or(opts.Buffer, DefaultBuffer)),
		queuedMem: membudget.New(cmp.Or(opts.MaxQueueBytes, DefaultMaxQueueBytes)),
		warn:      cmp.Or(opts.WarnInterval, DefaultWarnInterval),
		log:       opts.Logger,
		shape:     shape,
		maxBytes:  cmp.Or(opts.MaxRecordBytes, DefaultMaxRecordBytes),
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	if r := opts.MaxRecordsPerSecond; r > 0 {
		// A burst of one second's worth, at most what int holds: a rate
		// past it would overflow to a negative burst, which takes nothing.
		l.limit = rate.NewLimiter(rate.Limit(r), int(min(max(1, math.Ceil(r)), maxBurst)))
	}
	if opts.Writer != nil {
		l.out = &output{w: opts.Writer}
	}
	if opts.Upload != nil {
		uo, err := opts.Upload.withDefaults(l.maxBytes)
		if err != nil {
			return nil, err
		}
		if l.up, err = newUploader(uo, l.log, l.drop); err != nil {
			return nil, err
		}
		// A record that keeps its input fits in a batch: MaxBatchBytes may
		// be as small as MaxRecordBytes, and a batch of one is the record
		// in brackets. One that would not loses its input, as one over
		// MaxRecordBytes does, instead of never reaching the collector.
		l.maxBytes = min(l.maxBytes, uo.MaxBatchBytes-batchFraming)
	}
	if l.flushBy == nil {
		l.flushBy = func() time.Time { return time.Now().Add(DefaultFlushTimeout) }
	}
	return l, nil
}

// maxBurst bounds the rate limiter's burst: math.MaxInt32, which every int
// holds and no second of records comes near.
const maxBurst = math.MaxInt32

// queued is a record waiting for the writer, with its estimated memory.
type queued struct {
	r     Record
	bytes int64
}

// Log queues r for writing and reports whether it was queued. When the
// buffer is full (in records or in estimated memory), r is dropped and
// counted (buffer_full), as it is (rate_limited) when it comes faster than
// Options.MaxRecordsPerSecond; once Run has stopped taking records (its
// context is done), r is dropped and counted as stopped. Log never blocks on the
// Writer or the collector. Safe for concurrent use, also before Run starts
// (records then wait in the buffer).
func (l *Logger) Log(r Record) bool {
	l.stop.RLock()
	defer l.stop.RUnlock()
	if l.stopped {
		l.drop(DropStopped, 1)
		return false
	}
	if l.limit != nil && !l.limit.Allow() {
		l.drop(DropRateLimited, 1)
		return false
	}
	q := queued{r: r, bytes: r.MemoryBytes()}
	if !l.queuedMem.Take(q.bytes) {
		l.drop(DropBufferFull, 1)
		return false
	}
	select {
	case l.ch <- q:
		return true
	default:
		l.queuedMem.Give(q.bytes)
		l.drop(DropBufferFull, 1)
		return false
	}
}

// Truncated returns how many records were written without their input
// because it would have made them larger than Options.MaxRecordBytes.
func (l *Logger) Truncated() uint64 { return l.truncated.Load() }

// Written returns how many records were written: handed to the Writer
// whole, in a Write that succeeded.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Run writes queued records until ctx is done, then writes whatever is still
// buffered, flushes, and returns nil. Cancel ctx only after the last Log
// call that should be written (for a server: after it has finished its
// in-flight requests). Records are written in batches: when a Write fails,
// every record it held is counted as dropped (write_failed), the failure is
// logged once at Error (later ones are counted, and warned of with the
// other drops), and the next batch is written afresh; the first Write that
// succeeds after failures logs "decision log recovered". While records are being dropped, a warning is
// logged at most every WarnInterval, from a goroutine of Run's own (so that
// it is logged even while the writer is stuck), which Run waits for before
// it returns. With an upload target, Run's own goroutine sends batches;
// once ctx is done Run returns when everything buffered was sent or
// dropped, by the flush deadline at the latest.
func (l *Logger) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	stopWarn := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		l.warnLoop(ctx, stopWarn)
	}()
	defer func() {
		close(stopWarn)
		wg.Wait()
	}()
	if l.up != nil {
		inputDone, upDone := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(upDone)
			l.up.run(ctx, inputDone, l.flushBy)
		}()
		// Before the warnings stop: the upload's last drops are warned of.
		defer func() {
			close(inputDone)
			<-upDone
		}()
	}
	var buf []byte
	for {
		select {
		case q := <-l.ch:
			buf = l.write(buf, q)
			// Drain what is already waiting before flushing once.
			for more := true; more; {
				select {
				case q := <-l.ch:
					buf = l.write(buf, q)
				default:
					more = false
				}
			}
			l.flush()
		case <-ctx.Done():
			// Take no more records: once Log has left, what the buffer
			// holds is all there will be.
			l.stop.Lock()
			l.stopped = true
			l.stop.Unlock()
			for {
				select {
				case q := <-l.ch:
					buf = l.write(buf, q)
				default:
					l.flush()
					return nil
				}
			}
		}
	}
}

// warnLoop logs a warning every interval in which records were dropped,
// and once more when stopped if drops happened since the last warning.
func (l *Logger) warnLoop(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(l.warn)
	defer tick.Stop()
	var warned [numDropReasons]uint64
	warn := func() {
		var attrs []slog.Attr
		var delta, total uint64
		for r := range numDropReasons {
			n := l.drops[r].Load()
			total += n
			if n != warned[r] {
				attrs = append(attrs, slog.Uint64(r.String(), n-warned[r]))
				delta += n - warned[r]
				warned[r] = n
			}
		}
		if delta > 0 {
			attrs = append([]slog.Attr{slog.Uint64("dropped", delta), slog.Uint64("dropped_total", total),
				slog.Int("buffer", cap(l.ch))}, attrs...)
			l.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "decision log dropped records", attrs...)
		}
	}
	for {
		select {
		case <-tick.C:
			warn()
		case <-stop:
			warn()
			return
		}
	}
}

// write encodes q's record once, hands it to each output and gives its
// memory back to the buffer.
func (l *Logger) write(buf []byte, q queued) []byte {
	buf = l.appendRecord(buf[:0], &q.r)
	l.queuedMem.Give(q.bytes)
	if l.up != nil {
		l.up.offer(buf)
	}
	if l.out != nil {
		buf = append(buf, '\n')
		l.writeLine(buf)
	}
	return buf
}

// appendRecord encodes r with its input shaped (masked, hashed) and bounded.
func (l *Logger) appendRecord(b []byte, r *Record) []byte {
	l.shape.shapeTop(r)
	var input []byte
	truncated := false
	if r.Input != nil {
		enc, err := l.shape.encode(r.Input)
		switch {
		case err != nil:
			truncated = true
		case len(enc) > l.maxBytes:
			truncated = true
		default:
			input = enc
		}
	}
	b = appendRecord(b, r, input)
	if len(b) > l.maxBytes && input != nil {
		b, truncated = appendRecord(b[:0], r, nil), true
	}
	if truncated {
		l.truncated.Add(1)
		b = append(b[:len(b)-1], `,"input_truncated":true}`...)
	}
	return b
}

// AppendRecord appends r's JSON encoding (one object, no newline) to b,
// its input unshaped:
//
//	{"decision_id":"…","time":"RFC 3339 UTC","allow":false,"reasons":[…],
//	 "revision":"…","api":"…","trace_id":"…","subject_id":"…","caller_id":"…",
//	 "action":{"name":"…","method":"…","path":"…"},"latency_us":12,"error":"…",
//	 "shadow":{"allow":true,"reasons":[…],"revision":"…","error":"…"},"input":{…}}
//
// revision, api, trace_id, subject_id, caller_id, the action's fields and
// error are left out when empty, shadow and input when nil; reasons is
// always an array.
func AppendRecord(b []byte, r *Record) []byte {
	var input []byte
	if r.Input != nil {
		if native, err := ast.JSON(r.Input); err == nil {
			input, _ = json.Marshal(native)
		}
	}
	return appendRecord(b, r, input)
}

// appendRecord appends r with input, already encoded (nil for none).
func appendRecord(b []byte, r *Record, input []byte) []byte {
	b = append(b, `{"decision_id":`...)
	b = jsonw.AppendString(b, r.DecisionID)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","allow":`...)
	b = strconv.AppendBool(b, r.Allow)
	b = append(b, `,"reasons":`...)
	b = jsonw.AppendStrings(b, r.Reasons)
	b = appendField(b, "revision", r.Revision)
	b = appendField(b, "api", r.API)
	b = appendField(b, "trace_id", r.TraceID)
	b = appendField(b, "subject_id", r.SubjectID)
	b = appendField(b, "caller_id", r.CallerID)
	b = append(b, `,"action":{`...)
	n := len(b)
	b = appendField(b, "name", r.Action.Name)
	b = appendField(b, "method", r.Action.Method)
	b = appendField(b, "path", r.Action.Path)
	if len(b) > n && b[n] == ',' {
		b = append(b[:n], b[n+1:]...) // drop the first field's comma
	}
	b = append(b, `},"latency_us":`...)
	b = strconv.AppendInt(b, r.Latency.Microseconds(), 10)
	b = appendField(b, "error", r.Error)
	if sh := r.Shadow; sh != nil {
		b = append(b, `,"shadow":{"allow":`...)
		b = strconv.AppendBool(b, sh.Allow)
		b = append(b, `,"reasons":`...)
		b = jsonw.AppendStrings(b, sh.Reasons)
		b = appendField(b, "revision", sh.Revision)
		b = appendField(b, "error", sh.Error)
		b = append(b, '}')
	}
	if input != nil {
		b = append(b, `,"input":`...)
		b = append(b, input...)
	}
	return append(b, '}')
}

func appendField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, key...)
	b = append(b, '"', ':')
	return jsonw.AppendString(b, v)
}
