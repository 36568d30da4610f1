package server

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/verdict-pdp/verdict/internal/filewatch"
)

// credentialCollector exports the status of the files kept in service
// while serving (Options.Credentials) at every scrape, labelled by name (a
// closed set: the configuration keys that name files).
type credentialCollector struct{ status func() []filewatch.Status }

var (
	credentialReloads = prometheus.NewDesc("verdict_credentials_reloads_total",
		"New contents of a key, certificate or CA file taken up while serving, by the configuration key naming it.",
		[]string{"name"}, nil)
	credentialReloadErrors = prometheus.NewDesc("verdict_credentials_reload_errors_total",
		"Distinct failures to take up a changed key, certificate or CA file (the previous contents kept serving), by name.",
		[]string{"name"}, nil)
	credentialLastReloadOK = prometheus.NewDesc("verdict_credentials_last_reload_ok",
		"1 when the file's contents are in service; 0 while its latest contents are refused (or it cannot be read).",
		[]string{"name"}, nil)
	credentialLoaded = prometheus.NewDesc("verdict_credentials_loaded_timestamp_seconds",
		"When the contents in service were read, in Unix seconds, by name.",
		[]string{"name"}, nil)
)

func (c *credentialCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- credentialReloads
	ch <- credentialReloadErrors
	ch <- credentialLastReloadOK
	ch <- credentialLoaded
}

func (c *credentialCollector) Collect(ch chan<- prometheus.Metric) {
	if c.status == nil {
		return
	}
	for _, st := range c.status() {
		ch <- prometheus.MustNewConstMetric(credentialReloads, prometheus.CounterValue, float64(st.Reloads), st.Name)
		ch <- prometheus.MustNewConstMetric(credentialReloadErrors, prometheus.CounterValue, float64(st.ReloadErrors), st.Name)
		ch <- prometheus.MustNewConstMetric(credentialLastReloadOK, prometheus.GaugeValue, b2f(st.LastError == ""), st.Name)
		ch <- prometheus.MustNewConstMetric(credentialLoaded, prometheus.GaugeValue, float64(st.LoadedAt.UnixNano())/1e9, st.Name)
	}
}
