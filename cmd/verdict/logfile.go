package main

import (
	"fmt"
	"os"
	"sync"
)

// logFile is the decision log's file, which SIGHUP reopens by its name: a
// log rotated by renaming it (logrotate's default) is then written anew
// instead of into the renamed file for as long as the process lives. Its
// methods do nothing on a nil *logFile (the log goes elsewhere).
type logFile struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// openLogFile opens path for appending, creating it (mode 0640).
func openLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	return &logFile{path: path, f: f}, nil
}

// Write appends p to the file open now.
func (l *logFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the file by its name again and writes there from now on;
// on failure the file open before stays in use.
func (l *logFile) Reopen() error {
	if l == nil {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("decision log: reopen: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the file open now.
func (l *logFile) Close() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}
