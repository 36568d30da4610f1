package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/verdict-pdp/verdict/authz"
)

// cacheCollector exports the engine's two caches (authz.Status.Caches) at
// every scrape, labelled by cache: token (verified tokens) and decision
// (the serving snapshot's decisions).
type cacheCollector struct{ engine Engine }

var (
	cacheHits = prometheus.NewDesc("verdict_cache_hits_total",
		"Lookups the cache answered, by cache (token: verified tokens; decision: decisions, across policy snapshots).",
		[]string{"cache"}, nil)
	cacheMisses = prometheus.NewDesc("verdict_cache_misses_total",
		"Lookups the cache could not answer, by cache.",
		[]string{"cache"}, nil)
	cacheEntries = prometheus.NewDesc("verdict_cache_entries",
		"Entries the cache holds now, by cache (decision: the serving snapshot's).",
		[]string{"cache"}, nil)
	cacheBytes = prometheus.NewDesc("verdict_cache_bytes",
		"Estimated memory the cache's entries hold now, the measure it is bounded by, by cache.",
		[]string{"cache"}, nil)
	cacheMaxBytes = prometheus.NewDesc("verdict_cache_max_bytes",
		"The cache's bound in estimated bytes (limits.token_cache_bytes, limits.decision_cache_bytes); 0 when off.",
		[]string{"cache"}, nil)
)

func (c *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{cacheHits, cacheMisses, cacheEntries, cacheBytes, cacheMaxBytes} {
		ch <- d
	}
}

func (c *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	caches := c.engine.Status().Caches
	for _, x := range []struct {
		name  string
		stats authz.CacheStats
	}{{"token", caches.Token}, {"decision", caches.Decision}} {
		ch <- prometheus.MustNewConstMetric(cacheHits, prometheus.CounterValue, float64(x.stats.Hits), x.name)
		ch <- prometheus.MustNewConstMetric(cacheMisses, prometheus.CounterValue, float64(x.stats.Misses), x.name)
		ch <- prometheus.MustNewConstMetric(cacheEntries, prometheus.GaugeValue, float64(x.stats.Entries), x.name)
		ch <- prometheus.MustNewConstMetric(cacheBytes, prometheus.GaugeValue, float64(x.stats.Bytes), x.name)
		ch <- prometheus.MustNewConstMetric(cacheMaxBytes, prometheus.GaugeValue, float64(x.stats.MaxBytes), x.name)
	}
}
