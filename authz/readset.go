package authz

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// The decision cache is keyed on what the policy reads. When a snapshot
// loads, planDecisionKeys walks every rule the decision can reach (from
// allow, reasons and headers, through every rule and function they refer
// to) and collects the input paths those rules can read. A decision then
// depends on the values at those paths and on nothing else of the request,
// so two requests that agree on them get the same answer, and the cache key
// is a hash of exactly those values (keyPlan.key).
//
// A read is the value at a path: input.action.name, or a whole subtree when
// a ref has a computed key below some prefix (input.subject.claims[k] reads
// all of input.subject.claims) or the value is passed on whole (to a
// function, a builtin, a comprehension's domain). object.get on an input
// value with constant keys reads the value at the joined path, and the
// type of the object it starts from (object.get fails on a non-object).
// The analysis is conservative: what it cannot follow (a data ref with a
// computed key) it over-approximates (every rule under the ground prefix),
// and the answer is then to read more, never less.
//
// Keys fall back to the request (the subject's token, the caller's
// credential, the whole action and resource) when the policy reads all of
// a subject's or caller's claims (a token's claims differ per token: jti,
// iat, exp) or replaces part of the input with `with`. Caching is off when
// the policy reads input.context (time, request id: unique per request) or
// the whole input document, or uses a nondeterministic or clock-dependent
// builtin.

// section is a top-level member of the input document.
type section uint8

const (
	sectionSubject section = iota
	sectionCaller
	sectionAction
	sectionResource
	sectionContext
)

var sectionNames = [...]string{"subject", "caller", "action", "resource", "context"}

// inputRead is one read of the input document: the value at path below
// input.<section> (empty path: the whole section), or with kindOnly just
// its type (absent, object, string, ...).
type inputRead struct {
	section  section
	path     ast.Ref
	kindOnly bool
	// field names the action member a read of input.action starts with
	// (name, method), for appendActionField; set by plan.
	field actionField
}

// actionField is a member of input.action that a key can read from the
// request's Action without building input.action.
type actionField uint8

const (
	fieldOther actionField = iota
	fieldName
	fieldMethod
)

// ref is the read as a ref rooted at input, e.g. input.subject.claims.roles.
func (r inputRead) ref() ast.Ref {
	out := make(ast.Ref, 0, len(r.path)+2)
	out = append(out, ast.InputRootDocument, ast.StringTerm(sectionNames[r.section]))
	return append(out, r.path...)
}

func (r inputRead) String() string {
	if r.kindOnly {
		return "type of " + r.ref().String()
	}
	return r.ref().String()
}

// keyMode is how a snapshot's decisions are keyed.
type keyMode uint8

const (
	keyOff     keyMode = iota // nothing is cached
	keyReads                  // the values at the paths the policy reads
	keyRequest                // the request: credentials, whole action and resource
)

// keyPlan says how one snapshot keys its decision cache. Immutable once
// made.
type keyPlan struct {
	mode keyMode
	// reads are the paths a keyReads key hashes, sorted, none below
	// another, and none into input.context.
	reads []inputRead
	// bounds[s]:bounds[s+1] are the reads of section s.
	bounds [sectionContext + 1]int
	// anonymous[s] encodes the reads of the anonymous subject and caller
	// (sections sectionSubject and sectionCaller), which never change.
	anonymous [sectionAction][]byte
	// resource is true when the key needs input.resource built.
	resource bool
	// actionFields is true when every read of input.action is of a named
	// member (none of the whole action), see actionFromFields.
	actionFields bool
	// note is Status.DecisionCache.
	note string
	// id tells this plan from every other in a token's key memo, without
	// keeping the plan (and its snapshot) alive.
	id *planID
}

// planID is a plan's identity: a distinct allocation per plan.
type planID struct{ _ byte }

// plan turns the reads into a keyPlan.
func (a *readAnalysis) plan() keyPlan {
	switch {
	case a.off != "":
		return keyPlan{mode: keyOff, note: "off: " + a.off}
	case a.request != "":
		return keyPlan{mode: keyRequest, resource: true, note: "on: keyed on the request: " + a.request}
	}
	reads := make([]inputRead, 0, len(a.reads))
	for _, r := range a.reads {
		reads = append(reads, r.inputRead)
	}
	reads = minimalReads(reads)
	p := keyPlan{mode: keyReads, reads: reads, actionFields: true, id: new(planID)}
	names := make([]string, len(reads))
	for i, r := range reads {
		names[i] = r.String()
		switch {
		case r.section == sectionResource:
			p.resource = true
		case r.section == sectionAction && len(r.path) == 0:
			p.actionFields = false
		case r.section == sectionAction:
			switch r.path[0].Value {
			case ast.String("name"):
				reads[i].field = fieldName
			case ast.String("method"):
				reads[i].field = fieldMethod
			}
		}
	}
	for s := range p.bounds {
		if p.bounds[s] = slices.IndexFunc(reads, func(r inputRead) bool { return r.section >= section(s) }); p.bounds[s] < 0 {
			p.bounds[s] = len(reads)
		}
	}
	anonymous := &asked{subject: anonymousSubject, caller: callerInput{term: anonymousCaller}}
	for _, s := range [...]section{sectionSubject, sectionCaller} {
		p.anonymous[s] = p.appendReads([]byte{}, p.bounds[s], p.bounds[s+1], anonymous, nil, nil, nil)
	}
	if len(reads) == 0 {
		p.note = "on: keyed on nothing: the policy reads no input"
	} else {
		p.note = "on: keyed on " + strings.Join(names, ", ")
	}
	return p
}

// minimalReads sorts reads and drops those another read covers: a read
// below a whole subtree read, a type read of a path whose value is read,
// duplicates.
func minimalReads(reads []inputRead) []inputRead {
	slices.SortFunc(reads, compareReads)
	reads = slices.CompactFunc(reads, func(x, y inputRead) bool { return compareReads(x, y) == 0 })
	var out []inputRead
	for i, r := range reads {
		covered := false
		for j, o := range reads {
			if j != i && covers(o, r) {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, r)
		}
	}
	return out
}

// covers reports whether reading o makes reading r redundant.
func covers(o, r inputRead) bool {
	if o.section != r.section || o.kindOnly || len(o.path) > len(r.path) || !r.path.HasPrefix(o.path) {
		return false
	}
	return len(o.path) < len(r.path) || r.kindOnly
}

func compareReads(x, y inputRead) int {
	if c := int(x.section) - int(y.section); c != 0 {
		return c
	}
	if c := x.path.Compare(y.path); c != 0 {
		return c
	}
	switch {
	case x.kindOnly == y.kindOnly:
		return 0
	case x.kindOnly:
		return 1
	}
	return -1
}
