package server

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/verdict-pdp/verdict/bundles"
)

// ReloadObserver measures policy reload attempts as the
// verdict_policy_reload_duration_seconds histogram, by result. Build it
// before the policy source (which reports to it as its bundles.Observer) and
// hand it to the server in Options.ReloadObserver, which registers it. It is
// safe for concurrent use.
type ReloadObserver struct {
	ok, failed prometheus.Observer
	vec        *prometheus.HistogramVec
}

var _ bundles.Observer = (*ReloadObserver)(nil)

// NewReloadObserver returns a ReloadObserver with no observations.
func NewReloadObserver() *ReloadObserver {
	vec := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "verdict_policy_reload_duration_seconds",
		Help:    "Time from a policy change being noticed to the new snapshot serving (or the attempt failing), by result.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"result"})
	return &ReloadObserver{ok: vec.WithLabelValues("ok"), failed: vec.WithLabelValues("error"), vec: vec}
}

// ObserveReload records one attempt.
func (o *ReloadObserver) ObserveReload(_ string, d time.Duration, err error) {
	if err != nil {
		o.failed.Observe(d.Seconds())
		return
	}
	o.ok.Observe(d.Seconds())
}
