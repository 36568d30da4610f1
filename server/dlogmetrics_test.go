package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// TestDecisionLogUploadMetrics: a log with a file and an upload target
// exports drops for every reason it can drop for, records delivered and
// the upload latency histogram; a log without an upload exports no upload
// series.
func TestDecisionLogUploadMetrics(t *testing.T) {
	var requests atomic.Int64
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if requests.Add(1) == 1 {
			w.WriteHeader(http.StatusBadRequest) // the first batch is refused: upload_failed
		}
	}))
	t.Cleanup(collector.Close)
	f := newFixture(t, fixtureOptions{})
	var file authztest.SyncBuffer
	dl, err := decisionlog.New(decisionlog.Options{Writer: &file,
		Upload: &decisionlog.UploadOptions{URL: collector.URL, MaxBatchRecords: 2, Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Engine: f.engine, DecisionLog: dl})
	if err != nil {
		t.Fatal(err)
	}
	stop := authztest.Start(t, dl.Run)
	for range 2 {
		s.Handler().ServeHTTP(newRecorder(), decideRequest(t))
	}
	deadline := time.Now().Add(5 * time.Second)
	for dl.DroppedFor(decisionlog.DropUploadFailed) != 2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	for range 2 {
		s.Handler().ServeHTTP(newRecorder(), decideRequest(t))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m := scrape(t, s)
	wantMetrics(t, m,
		`verdict_decision_log_dropped_total{reason="buffer_full"} 0`,
		`verdict_decision_log_dropped_total{reason="write_failed"} 0`,
		`verdict_decision_log_dropped_total{reason="upload_failed"} 2`,
		`verdict_decision_log_dropped_total{reason="too_large"} 0`,
		`verdict_decision_log_uploaded_total 2`,
		`verdict_decision_log_upload_duration_seconds_count 2`,
		`verdict_decision_log_upload_duration_seconds_bucket{le="+Inf"} 2`,
		`verdict_decision_log_truncated_total 0`,
	)

	plain, err := decisionlog.New(decisionlog.Options{Writer: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	s, err = New(Options{Engine: f.engine, DecisionLog: plain})
	if err != nil {
		t.Fatal(err)
	}
	m = scrape(t, s)
	if strings.Contains(m, "verdict_decision_log_uploaded_total ") || strings.Contains(m, "upload_duration_seconds_count") ||
		strings.Contains(m, `verdict_decision_log_dropped_total{reason="too_large"}`) {
		t.Errorf("upload series without an upload target:\n%s", grep(m, "decision_log"))
	}
	if !strings.Contains(m, `verdict_decision_log_dropped_total{reason="write_failed"} 0`) {
		t.Errorf("no write_failed series:\n%s", grep(m, "decision_log"))
	}
}
