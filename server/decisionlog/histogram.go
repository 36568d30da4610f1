package decisionlog

import (
	"sync"
	"time"
)

// uploadBuckets are the upper bounds, in seconds, of the upload latency
// histogram.
var uploadBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// histogram is a fixed-bucket latency histogram, safe for concurrent use.
type histogram struct {
	bounds []float64
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
}

func newHistogram(bounds []float64) histogram {
	return histogram{bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(h.bounds) && s > h.bounds[i] {
		i++
	}
	h.mu.Lock()
	h.counts[i]++
	h.sum += s
	h.mu.Unlock()
}

// snapshot returns the histogram with cumulative counts.
func (h *histogram) snapshot() Histogram {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := Histogram{Buckets: make(map[float64]uint64, len(h.bounds)), Sum: h.sum}
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		out.Buckets[b] = cum
	}
	out.Count = cum + h.counts[len(h.bounds)]
	return out
}
