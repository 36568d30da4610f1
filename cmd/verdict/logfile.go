package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
)

// logFile is the decision log's file, which SIGHUP reopens by its name: a
// log rotated by renaming it (logrotate's default) is then written anew
// instead of into the renamed file for as long as the process lives; so
// is a file that refuses writes (the decision log goes on trying). The
// switch happens at a line's end, never inside a record (a failed write
// may have stopped inside one). Its methods do nothing on a nil
// *logFile (the log goes elsewhere).
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
	next *os.File // reopened, waiting for the line in f to end
	// midLine says the last write to f did not end a line.
	midLine bool
}

// openLogFile opens path for appending, creating it (mode 0640).
func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

// Write appends p: to the file open now, and after a reopen, from the end
// of the line under way on, to the new one; when writing that end fails,
// the new one is used from the next Write on.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	if l.next != nil {
		end := bytes.IndexByte(p, '\n')
		if end < 0 {
			return l.write(p)
		}
		m, err := l.write(p[:end+1])
		n += m
		l.f.Close()
		l.f, l.next = l.next, nil
		if err != nil {
			// The file open before refuses writes: the line under way is
			// lost anyway, and the reopened file takes the next write
			// (waiting for one to end the line there would wait forever).
			l.midLine = false
			return n, err
		}
		p = p[end+1:]
	}
	m, err := l.write(p)
	return n + m, err
}

// write writes p to f and notes whether a line is under way.
func (l *logFile) write(p []byte) (int, error) {
	n, err := l.f.Write(p)
	if n > 0 {
		l.midLine = p[n-1] != '\n'
	}
	return n, err
}

// Reopen opens the file by its name again and writes there from the next
// line on; when it cannot be opened, the file open before stays in use.
func (l *logFile) Reopen() error {
	if l == nil {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("decision log: reopen: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next != nil { // reopened twice within one line
		l.next.Close()
	}
	if l.midLine {
		l.next = f
		return nil
	}
	old := l.f
	l.f = f
	// The new file serves either way: an error closing the old one (a
	// broken file, which the reopen is for) does not undo the reopen.
	_ = old.Close()
	return nil
}

// Close closes the file open now, and one reopened and not yet in use.
func (l *logFile) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var err error
	if l.next != nil {
		err = l.next.Close()
	}
	return errors.Join(l.f.Close(), err)
}
