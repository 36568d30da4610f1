package authz

import "context"

// Pinned decides on one policy snapshot: the one serving when Engine.Pin
// was called, whatever Load installs afterwards. A batch of decisions that
// must come from one revision (the AuthZEN evaluations API, a page asking
// which of its actions a user may take) decides on one Pinned, so that a
// reload in the middle cannot answer half of it with each policy.
//
// A Pinned keeps its snapshot, and the snapshot's decision cache, in
// memory: hold it for one batch, not longer. Safe for concurrent use.
//
// A zero Pinned, or a nil *Pinned, is pinned on no snapshot: its decisions
// are ErrNotReady refusals and its Revision is "".
type Pinned struct {
	e  *Engine
	cp *compiled // nil when no policy was loaded
}

// Pin returns a Pinned on the snapshot serving now. Before the first
// successful Load its decisions are ErrNotReady refusals, as Decide's are,
// and so are those of a Pinned from an Engine not built with New.
func (e *Engine) Pin() *Pinned {
	if e == nil {
		return &Pinned{}
	}
	return &Pinned{e: e, cp: e.current.Load()}
}

// Decide answers req as Engine.Decide does, on the pinned snapshot.
func (p *Pinned) Decide(ctx context.Context, req Request) (Decision, error) {
	if p == nil {
		return notBuilt()
	}
	return p.e.decideOn(ctx, p.cp, &req)
}

// Revision names the pinned snapshot; "" when no policy was loaded.
func (p *Pinned) Revision() string {
	if p == nil || p.cp == nil {
		return ""
	}
	return p.cp.snapshot.Revision
}
