// Package decisionlog writes Verdict's decision log: one JSON object per
// line for every decision, to stdout, a file, or any io.Writer.
//
// A Logger never blocks the request that logs: Log puts the record in a
// bounded buffer and returns at once; a single writer goroutine, run by Run,
// encodes and writes records in order. When the buffer is full the record is
// dropped and counted (Dropped), and Run logs a periodic warning while drops
// continue: the log never grows without bound and never slows decisions.
//
// A record never carries the raw bearer token: only the decision, who asked
// (subject and caller IDs) and what for (the action).
package decisionlog

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/verdict-pdp/verdict/internal/jsonw"
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
}

// Options configures a Logger. Every zero value means the documented default.
type Options struct {
	// Writer receives the JSON lines (required). The Logger buffers writes
	// and flushes whenever its buffer runs empty and when Run returns; it
	// never closes Writer.
	Writer io.Writer
	// Buffer is how many records may wait for the writer; 0 means 4096.
	Buffer int
	// WarnInterval is how often, at most, Run warns that records were
	// dropped; 0 means 10 s.
	WarnInterval time.Duration
	// Logger receives the drop warnings and write errors; nil discards them.
	Logger *slog.Logger
}

// Logger is a decision log. Log is safe for concurrent use and never
// blocks; Run must be called (once) for records to be written.
type Logger struct {
	w       *bufio.Writer
	ch      chan Record
	warn    time.Duration
	log     *slog.Logger
	dropped atomic.Uint64
	written atomic.Uint64
}

// New returns a Logger writing to opts.Writer. It starts nothing.
func New(opts Options) (*Logger, error) {
	if opts.Writer == nil {
		return nil, fmt.Errorf("%w: Writer is required", ErrOptions)
	}
	if opts.Buffer < 0 || opts.WarnInterval < 0 {
		return nil, fmt.Errorf("%w: negative buffer or interval", ErrOptions)
	}
	l := &Logger{
		w:    bufio.NewWriterSize(opts.Writer, 64<<10),
		ch:   make(chan Record, cmpOr(opts.Buffer, DefaultBuffer)),
		warn: cmpOr(opts.WarnInterval, DefaultWarnInterval),
		log:  opts.Logger,
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l, nil
}

func cmpOr[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Log queues r for writing and reports whether it was queued. When the
// buffer is full, r is dropped and counted; Log never blocks. Safe for
// concurrent use, also before Run starts and after it returns (records
// then wait in, or are dropped from, the buffer).
func (l *Logger) Log(r Record) bool {
	select {
	case l.ch <- r:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// Dropped returns how many records were dropped because the buffer was full.
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Written returns how many records were written.
func (l *Logger) Written() uint64 { return l.written.Load() }

// Run writes queued records until ctx is done, then writes whatever is still
// buffered, flushes, and returns nil. Cancel ctx only after the last Log
// call that should be written (for a server: after it has finished its
// in-flight requests). A write error is logged and the record counted as
// dropped; Run keeps going. While records are being dropped, a warning is
// logged at most every WarnInterval, from a goroutine of Run's own (so that
// it is logged even while the writer is stuck), which Run waits for before
// it returns.
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
	var buf []byte
	for {
		select {
		case r := <-l.ch:
			buf = l.write(buf, r)
			// Drain what is already waiting before flushing once.
			for more := true; more; {
				select {
				case r := <-l.ch:
					buf = l.write(buf, r)
				default:
					more = false
				}
			}
			l.flush()
		case <-ctx.Done():
			for {
				select {
				case r := <-l.ch:
					buf = l.write(buf, r)
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
	var warned uint64
	warn := func() {
		if d := l.dropped.Load(); d != warned {
			l.log.LogAttrs(context.WithoutCancel(ctx), slog.LevelWarn, "decision log dropped records",
				slog.Uint64("dropped", d-warned), slog.Uint64("dropped_total", d),
				slog.Int("buffer", cap(l.ch)))
			warned = d
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

func (l *Logger) write(buf []byte, r Record) []byte {
	buf = AppendRecord(buf[:0], &r)
	buf = append(buf, '\n')
	if _, err := l.w.Write(buf); err != nil {
		l.dropped.Add(1)
		l.log.Error("decision log write failed", slog.String("error", err.Error()))
		return buf
	}
	l.written.Add(1)
	return buf
}

func (l *Logger) flush() {
	if err := l.w.Flush(); err != nil {
		l.log.Error("decision log flush failed", slog.String("error", err.Error()))
	}
}

// AppendRecord appends r's JSON encoding (one object, no newline) to b:
//
//	{"decision_id":"…","time":"RFC 3339 UTC","allow":false,"reasons":[…],
//	 "revision":"…","subject_id":"…","caller_id":"…",
//	 "action":{"name":"…","method":"…","path":"…"},"latency_us":12,"error":"…"}
//
// revision, subject_id, caller_id, the action's fields and error are left
// out when empty; reasons is always an array.
func AppendRecord(b []byte, r *Record) []byte {
	b = append(b, `{"decision_id":`...)
	b = jsonw.AppendString(b, r.DecisionID)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","allow":`...)
	b = strconv.AppendBool(b, r.Allow)
	b = append(b, `,"reasons":[`...)
	for i, s := range r.Reasons {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonw.AppendString(b, s)
	}
	b = append(b, ']')
	b = appendField(b, "revision", r.Revision)
	b = appendField(b, "api", r.API)
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
