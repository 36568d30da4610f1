package decisionlog_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestQueueBoundedByMemory: records wait for the writer bounded in
// estimated memory as well as in number. A 61 KB body of 20,000 empty
// arrays (under the server's default body limit) makes an input of about
// 2 MiB in memory; with the writer behind, 4,096 of them took 8 GiB. Now
// the queue takes what fits in MaxQueueBytes, drops the rest as
// buffer_full, and takes records again once the writer has written.
func TestQueueBoundedByMemory(t *testing.T) {
	body := "{\"a\": [" + strings.Repeat("[],", 20000) + "[]]}"
	input := ast.MustParseTerm(body).Value
	big := decisionlog.Record{DecisionID: "big", Input: input}
	est := big.MemoryBytes()
	if est < int64(20*len(body)) {
		t.Fatalf("MemoryBytes = %d for a %d-byte body of empty arrays, want many times its size", est, len(body))
	}
	small := decisionlog.Record{DecisionID: "small", Input: ast.MustParseTerm(`{"subject": {"id": "alice"}}`).Value}
	if s := small.MemoryBytes(); s <= 256 || s > 4096 {
		t.Errorf("MemoryBytes = %d for a small input", s)
	}

	var out bytes.Buffer
	l, err := decisionlog.New(decisionlog.Options{Writer: &out, MaxQueueBytes: 4 * est, MaxRecordBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	queued := 0
	for range 100 {
		if l.Log(big) {
			queued++
		}
	}
	if queued != 4 || l.Dropped() != 96 {
		t.Fatalf("queued %d, dropped %d of 100 records of %d bytes in a queue of %d bytes; want 4 and 96", queued, l.Dropped(), est, 4*est)
	}
	stop := authztest.Start(t, l.Run)
	for deadline := time.Now().Add(10 * time.Second); l.Written() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("written %d, want 4", l.Written())
		}
	}
	if !l.Log(big) {
		t.Error("the queue did not take a record once the writer had written the others")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != 5 {
		t.Errorf("written %d, want 5", l.Written())
	}
}

// TestLogAfterStopIsCounted: a record logged after Run has stopped taking
// records (a decision that outlived the server's shutdown) was queued
// where nothing read it, neither written nor counted. It is now dropped
// and counted as stopped.
func TestLogAfterStopIsCounted(t *testing.T) {
	var out bytes.Buffer
	l, err := decisionlog.New(decisionlog.Options{Writer: &out})
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, l.Run)
	rec := decisionlog.Record{DecisionID: "before"}
	if !l.Log(rec) {
		t.Fatal("Log refused a record while Run ran")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if l.Log(decisionlog.Record{DecisionID: "after"}) {
		t.Error("Log queued a record after Run returned")
	}
	if l.Written() != 1 || l.DroppedFor(decisionlog.DropStopped) != 1 || l.Stats().Dropped[decisionlog.DropStopped] != 1 {
		t.Errorf("written %d, dropped as stopped %d; want 1 and 1", l.Written(), l.DroppedFor(decisionlog.DropStopped))
	}
}
