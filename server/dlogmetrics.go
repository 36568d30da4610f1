package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// decisionLogCollector exports the decision log's counters at every
// scrape: drops by reason (only the reasons the log can drop for, so a
// log without an upload target has no upload_failed series), truncations,
// and, with an upload target, records delivered and the upload requests'
// latency. A DecisionLog without Stats (see DecisionLog) is read through
// Dropped and Truncated when it has them (0 when not); a nil one exports
// nothing.
type decisionLogCollector struct{ dlog DecisionLog }

var (
	dlogDropped = prometheus.NewDesc("verdict_decision_log_dropped_total",
		"Decision log records dropped, by reason: buffer_full (a buffer was full: the output or the collector is behind), "+
			"write_failed (the file or stdout refused the record), upload_failed (the collector refused its batch with a 4xx, "+
			"or kept failing until the attempts or the shutdown budget ran out), too_large (larger than an upload batch may be), "+
			"stopped (decided after the log had stopped, during shutdown). "+
			"A record dropped by one output and delivered by the other counts here.",
		[]string{"reason"}, nil)
	dlogTruncated = prometheus.NewDesc("verdict_decision_log_truncated_total",
		"Decision log records written without their input document because it would have made them larger than the record limit.",
		nil, nil)
	dlogUploaded = prometheus.NewDesc("verdict_decision_log_uploaded_total",
		"Decision log records the collector accepted (2xx).",
		nil, nil)
	dlogUploadDuration = prometheus.NewDesc("verdict_decision_log_upload_duration_seconds",
		"Time each decision-log upload request (one batch, one attempt) took, whatever its outcome.",
		nil, nil)
)

func (c *decisionLogCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dlogDropped, dlogTruncated, dlogUploaded, dlogUploadDuration} {
		ch <- d
	}
}

func (c *decisionLogCollector) Collect(ch chan<- prometheus.Metric) {
	switch d := c.dlog.(type) {
	case nil:
	case interface{ Stats() decisionlog.Stats }:
		st := d.Stats()
		for reason, n := range st.Dropped {
			ch <- prometheus.MustNewConstMetric(dlogDropped, prometheus.CounterValue, float64(n), reason.String())
		}
		ch <- prometheus.MustNewConstMetric(dlogTruncated, prometheus.CounterValue, float64(st.Truncated))
		if up := st.Upload; up != nil {
			ch <- prometheus.MustNewConstMetric(dlogUploaded, prometheus.CounterValue, float64(up.Uploaded))
			ch <- prometheus.MustNewConstHistogram(dlogUploadDuration, up.Duration.Count, up.Duration.Sum, up.Duration.Buckets)
		}
	default:
		var dropped, truncated uint64
		if dd, ok := d.(interface{ Dropped() uint64 }); ok {
			dropped = dd.Dropped()
		}
		if dt, ok := d.(interface{ Truncated() uint64 }); ok {
			truncated = dt.Truncated()
		}
		ch <- prometheus.MustNewConstMetric(dlogDropped, prometheus.CounterValue, float64(dropped), decisionlog.DropBufferFull.String())
		ch <- prometheus.MustNewConstMetric(dlogTruncated, prometheus.CounterValue, float64(truncated))
	}
}
