package authz

import (
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/topdown"
)

// evalStop is an evaluation's topdown.Cancel: cancelled by its time or
// its caller (Cancel), or while the process is short of memory, which it
// remembers (memory).
type evalStop struct {
	cancelled atomic.Bool
	short     func() bool // nil: never
	memory    atomic.Bool
}

func newEvalStop(short func() bool) *evalStop { return &evalStop{short: short} }

// Cancel stops the evaluation.
func (s *evalStop) Cancel() { s.cancelled.Store(true) }

// Cancelled reports whether the evaluation should stop.
func (s *evalStop) Cancelled() bool {
	if s.cancelled.Load() {
		return true
	}
	if s.short != nil && s.short() {
		s.memory.Store(true)
		return true
	}
	return false
}

// stoppedForMemory is the refusal of an evaluation that stopped because
// the process was short of memory, or nil.
func (s *evalStop) stoppedForMemory(err error) *Refusal {
	if err == nil || !s.memory.Load() || !topdown.IsCancel(err) {
		return nil
	}
	return &Refusal{Category: ErrPolicy, Detail: MemoryDetail}
}
