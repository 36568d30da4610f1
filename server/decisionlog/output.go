package decisionlog

import (
	"context"
	"io"
	"log/slog"
	"sort"
)

// outputBufferBytes is how many bytes of encoded records the output holds
// before it hands them to the Writer.
const outputBufferBytes = 64 << 10

// output buffers encoded records for Options.Writer, handing them over in
// one Write when its buffer fills and when the Logger flushes. A record
// counts as written once the Writer has taken all of its bytes, and as
// dropped (write_failed) when the Write holding it failed, those buffered
// before it included. A failed Write loses only what it held: the next one
// starts afresh (bufio.Writer would refuse every later write with the
// first error), with a line break first when the failed one stopped inside
// a line, so that the next record is a line of its own (readers skip the
// blank line this may leave). Used by Run's goroutine only.
type output struct {
	w    io.Writer
	buf  []byte
	ends []int // where each record held in buf ends
	// midLine says that the last failed Write stopped inside a line: buf
	// begins with the line break that ends it.
	midLine bool
	// failing is set by a failed Write and cleared by the next that
	// succeeds; lost counts the records dropped in between.
	failing bool
	lost    uint64
}

// writeLine appends one record's line (ending in '\n') to the output,
// writing out what is buffered first when the line would not fit.
func (l *Logger) writeLine(line []byte) {
	o := l.out
	if len(o.ends) > 0 && len(o.buf)+len(line) > outputBufferBytes {
		l.flush()
	}
	o.buf = append(o.buf, line...)
	o.ends = append(o.ends, len(o.buf))
	if len(o.buf) >= outputBufferBytes {
		l.flush()
	}
}

// flush hands what is buffered to the Writer, counts its records written
// or dropped, and logs when writing starts failing (once, at Error) and
// when it recovers: the records lost in between are counted, and warned
// of, with the other drops (warnLoop).
func (l *Logger) flush() {
	o := l.out
	if o == nil || len(o.ends) == 0 {
		return
	}
	n, err := o.w.Write(o.buf)
	if err == nil && n < len(o.buf) {
		err = io.ErrShortWrite
	}
	done := len(o.ends)
	if err != nil {
		done = sort.SearchInts(o.ends, n+1) // the records whose every byte was taken
		if n > 0 {
			o.midLine = o.buf[n-1] != '\n'
		}
	} else {
		o.midLine = false
	}
	l.written.Add(uint64(done))
	if lost := len(o.ends) - done; lost > 0 {
		l.drop(DropWriteFailed, lost)
		o.lost += uint64(lost)
	}
	switch {
	case err != nil && !o.failing:
		o.failing = true
		l.log.LogAttrs(context.Background(), slog.LevelError, "decision log write failed",
			slog.String("error", err.Error()), slog.Int("records_lost", len(o.ends)-done),
			slog.String("note", "records are dropped (write_failed) until a write succeeds"))
	case err == nil && o.failing:
		l.log.LogAttrs(context.Background(), slog.LevelInfo, "decision log recovered",
			slog.Uint64("write_failed", o.lost))
		o.failing, o.lost = false, 0
	}
	o.buf, o.ends = o.buf[:0], o.ends[:0]
	if cap(o.buf) > 4*outputBufferBytes {
		o.buf = nil // a record of up to LargestRecordBytes passed through
	}
	if o.midLine {
		o.buf = append(o.buf, '\n')
	}
}
