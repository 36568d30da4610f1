package server

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// policyCollector exports which policy revision serves, and when the
// source last confirmed it: what tells replicas apart, and a bundle going
// stale before policy.max_age turns it not ready.
type policyCollector struct {
	engine Engine
	source Source // nil without one (the embedded policies)
}

var (
	policyInfo = prometheus.NewDesc("verdict_policy_info",
		"Always 1; its label says which policy revision serves (none before one is loaded).",
		[]string{"revision"}, nil)
	policyLastSuccess = prometheus.NewDesc("verdict_policy_last_success_timestamp_seconds",
		"When the policy source last confirmed that the serving policy is what it holds (a reload, an unchanged re-read, a bundle poll answered 304), in Unix seconds; absent before it has.",
		nil, nil)
)

func (c *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- policyInfo
	ch <- policyLastSuccess
}

func (c *policyCollector) Collect(ch chan<- prometheus.Metric) {
	if rev := c.engine.Status().Revision; rev != "" {
		// A label must be UTF-8, or the whole scrape fails; an embedding
		// program's revision may be any bytes.
		ch <- prometheus.MustNewConstMetric(policyInfo, prometheus.GaugeValue, 1, strings.ToValidUTF8(rev, "\uFFFD"))
	}
	if c.source == nil {
		return
	}
	if at := c.source.Status().LastSuccess; !at.IsZero() {
		ch <- prometheus.MustNewConstMetric(policyLastSuccess, prometheus.GaugeValue, float64(at.UnixNano())/1e9)
	}
}
