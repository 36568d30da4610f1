package local_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	
	"github.com/verdict-pdp/verdict/bundles/local"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string               { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

const good = "package authz\n\nallow := true\n"

func TestReproBrokenSave(t *testing.T) {
	for _, broken := range []string{"package authz\nallow if {", "package authz\n\ndefault allow := false\ndefault allow := true\n"} {
		dir := t.TempDir()
		p := filepath.Join(dir, "authz.rego")
		os.WriteFile(p, []byte(good), 0o644)
		var buf syncBuf
		log := slog.New(slog.NewTextHandler(&buf, nil))
		e, _ := authz.New(authz.Options{})
		d, _ := local.NewDir(local.DirOptions{Dir: dir, Logger: log, RetryInterval: 100 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- d.Run(ctx, e) }()
		<-d.Initialized()
		os.WriteFile(p, []byte(broken), 0o644)
		time.Sleep(850 * time.Millisecond)
		st := d.Status()
		t.Logf("broken: errors=%d lines=%d", st.ReloadErrors, strings.Count(buf.String(), "failed"))
		os.WriteFile(p, []byte(good), 0o644)
		time.Sleep(400 * time.Millisecond)
		st = d.Status()
		t.Logf("restored: src LastError=%q errors=%d engine LastError=%q recovered-lines=%d", st.LastError, st.ReloadErrors, e.Status().LastError, strings.Count(buf.String(), "recovered"))
		cancel()
		<-done
		t.Log(buf.String())
	}
}
