//go:build unix

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/server/config"
)

// TestSecretFilesNeverWaitedOn: a header file (decision_log.upload.headers,
// policy.bundle_headers: {file: …}), read before every request, and
// decision_log.hash_key_file. Whoever can write the secret's directory
// could put a FIFO in its place: opening it waited for a writer forever,
// stopping the uploader (and the shutdown flush behind it) or the bundle
// poller, or the start. It is refused at once, as the key files are; a
// file over the bound is refused without being read whole.
func TestSecretFilesNeverWaitedOn(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "token")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, []byte(strings.Repeat("x", maxHeaderFile+1)), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{File: filepath.Join(dir, "verdict.yaml")}
	within := func(t *testing.T, f func() error) error {
		t.Helper()
		done := make(chan error, 1)
		go func() { done <- f() }()
		select {
		case err := <-done:
			return err
		case <-time.After(5 * time.Second):
			// Unblock the reader, so that the test ends.
			if w, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			t.Fatal("the read waited on the FIFO")
			return nil
		}
	}
	for _, tc := range []struct {
		name, file, want string
	}{
		{name: "fifo", file: "token", want: "decision_log.upload.headers.Authorization: open " + fifo + ": not a regular file"},
		{name: "too large", file: "big", want: "decision_log.upload.headers.Authorization: big is over 16384 bytes"},
	} {
		t.Run("header "+tc.name, func(t *testing.T) {
			hf := headerFunc(cfg, "decision_log.upload.headers", map[string]config.HeaderValue{"Authorization": {File: tc.file, Prefix: "Bearer "}})
			err := within(t, func() error { _, err := hf(); return err })
			if err == nil || err.Error() != tc.want {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("hash key", func(t *testing.T) {
		err := within(t, func() error { _, err := readSecret(cfg, "decision_log.hash_key_file", "token", ""); return err })
		if err == nil || !strings.Contains(err.Error(), "decision_log.hash_key_file: open "+fifo+": not a regular file") {
			t.Errorf("err = %v", err)
		}
	})
}
