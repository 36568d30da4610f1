package decisionlog

// DropReason says why a record was dropped. Its names are a closed set,
// used as a metric label.
type DropReason int

// The reasons a record is dropped.
const (
	// DropBufferFull: Log found the Logger's buffer full (the writer is
	// behind), or the upload buffer was full (the collector is behind).
	DropBufferFull DropReason = iota
	// DropWriteFailed: writing the record to Options.Writer failed.
	DropWriteFailed
	// DropUploadFailed: the record's batch was refused by the collector
	// (a 4xx other than 429), or given up after Upload.MaxAttempts, or
	// still unsent at the flush deadline.
	DropUploadFailed
	// DropTooLarge: the record alone is larger than a batch may be
	// (Upload.MaxBatchBytes).
	DropTooLarge
	// DropStopped: Log was called after Run had written its last records
	// (a decision that outlived the server's shutdown).
	DropStopped
	// DropRateLimited: Log was called faster than
	// Options.MaxRecordsPerSecond allows.
	DropRateLimited

	numDropReasons
)

var dropReasonNames = [numDropReasons]string{"buffer_full", "write_failed", "upload_failed", "too_large", "stopped", "rate_limited"}

// String returns the reason's label: buffer_full, write_failed,
// upload_failed, too_large, stopped or rate_limited.
func (r DropReason) String() string {
	if r < 0 || r >= numDropReasons {
		return "unknown"
	}
	return dropReasonNames[r]
}

// Stats are a Logger's counters, as Stats returns them.
type Stats struct {
	// Written counts the records written to Options.Writer: each in a
	// Write that succeeded. A record of a Write that failed is dropped
	// (write_failed), also when it had been logged before the failure.
	Written uint64
	// Truncated counts the records encoded without their input (see
	// Options.MaxRecordBytes).
	Truncated uint64
	// Dropped counts dropped records by reason, for the reasons this
	// Logger can drop for: buffer_full and stopped always, write_failed
	// with a Writer, upload_failed and too_large with an upload target,
	// rate_limited with Options.MaxRecordsPerSecond. A record dropped
	// by one output and delivered by the other is counted here and there.
	Dropped map[DropReason]uint64
	// Upload is nil without an upload target.
	Upload *UploadStats
}

// UploadStats are the counters of the upload to a collector.
type UploadStats struct {
	// Uploaded counts the records the collector accepted (2xx).
	Uploaded uint64
	// Duration is the histogram of upload requests' durations, whatever
	// their outcome.
	Duration Histogram
}

// Histogram is a latency histogram: Buckets maps each upper bound, in
// seconds, to the number of observations at or below it (cumulative);
// Count and Sum (seconds) cover every observation.
type Histogram struct {
	Buckets map[float64]uint64
	Count   uint64
	Sum     float64
}

// Stats returns the Logger's counters. Safe for concurrent use.
func (l *Logger) Stats() Stats {
	st := Stats{Written: l.written.Load(), Truncated: l.truncated.Load(), Dropped: map[DropReason]uint64{}}
	reasons := []DropReason{DropBufferFull, DropStopped}
	if l.out != nil {
		reasons = append(reasons, DropWriteFailed)
	}
	if l.limit != nil {
		reasons = append(reasons, DropRateLimited)
	}
	if l.up != nil {
		reasons = append(reasons, DropUploadFailed, DropTooLarge)
		st.Upload = &UploadStats{Uploaded: l.up.uploaded.Load(), Duration: l.up.latency.snapshot()}
	}
	for _, r := range reasons {
		st.Dropped[r] = l.drops[r].Load()
	}
	return st
}

// Dropped returns how many records were dropped, for any reason (see
// DroppedFor).
func (l *Logger) Dropped() uint64 {
	var n uint64
	for i := range l.drops {
		n += l.drops[i].Load()
	}
	return n
}

// DroppedFor returns how many records were dropped for reason r.
func (l *Logger) DroppedFor(r DropReason) uint64 {
	if r < 0 || r >= numDropReasons {
		return 0
	}
	return l.drops[r].Load()
}

// Uploaded returns how many records the collector accepted; 0 without an
// upload target.
func (l *Logger) Uploaded() uint64 {
	if l.up == nil {
		return 0
	}
	return l.up.uploaded.Load()
}

// drop counts n records dropped for reason r.
func (l *Logger) drop(r DropReason, n int) { l.drops[r].Add(uint64(n)) }
