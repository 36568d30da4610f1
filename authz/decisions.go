package authz

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"maps"
	"slices"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// verifiedToken is what the engine keeps about a token it has verified:
// the ready-made input value for the purpose it was verified for, so a
// repeat decision builds no claims at all.
type verifiedToken struct {
	subject   *ast.Term // input.subject, for a subject's token
	caller    *ast.Term // input.caller, for a service token naming a service
	subjectID string
	callerID  string
	issuer    string
	keyID     string
	content   [32]byte  // SHA-256 of the signed content (header.payload)
	expires   time.Time // never later than the token's exp
	size      int       // estimated memory in bytes, for the cache's bound
	// memo is the token's part of the decision key under the plan of the
	// snapshot that last used it (keyPlan.appendTokenReads).
	memo atomic.Pointer[keyMemo]
}

// keyMemo is the encoding of a plan's reads of input.subject (or
// input.caller) built from one verified token, which they depend on
// alone: a cache hit for a known token then touches none of its claims.
type keyMemo struct {
	plan    *planID
	section section
	enc     []byte
}

// cachedDecision is the part of a decision a snapshot's cache keeps. It is
// immutable; fill copies it out.
type cachedDecision struct {
	allow   bool
	reasons []string
	headers map[string]string
}

func newCachedDecision(d *Decision) cachedDecision {
	return cachedDecision{allow: d.Allow, reasons: slices.Clone(d.Reasons), headers: maps.Clone(d.Headers)}
}

func (c cachedDecision) fill(d *Decision) {
	d.Allow, d.Reasons, d.Headers = c.allow, slices.Clone(c.reasons), maps.Clone(c.headers)
}

// size is the decision's estimated memory in bytes, for the cache's
// bound.
func (c cachedDecision) size() int {
	n := 64 + 16*len(c.reasons)
	for _, r := range c.reasons {
		n += len(r)
	}
	if c.headers != nil {
		n += 48
		for k, v := range c.headers {
			n += 64 + len(k) + len(v)
		}
	}
	return n
}

// keyBufSize is the stack buffer a key is encoded in; a longer encoding
// (large subtrees) moves to the heap.
const keyBufSize = 256

// key is the decision cache key of a request under plan p: the SHA-256 of
// the canonical encoding of the values at p's reads (keyReads), or of the
// request's credentials, action and resource (keyRequest). subject and
// caller come from a; resource is the built input.resource, action the
// built input.action, or nil when actionFromFields(act) says act's fields
// are enough (no input.action built: a cache hit costs no allocation).
//
// The encoding is injective: each read's value is encoded with its type
// and lengths, and an absent value has its own tag, so two keys are equal
// only when every read found equal values (or found none). Numbers are
// encoded as written ("1" and "1.0" differ), which can only split a key,
// never merge two. The reads are fixed per snapshot, so their paths need
// not be encoded.
func (p *keyPlan) key(a *asked, act *Action, action, resource *ast.Term) cacheKey {
	var b [keyBufSize]byte
	buf := b[:0]
	switch p.mode {
	case keyReads:
		// The reads are sorted by section: subject, caller, action,
		// resource.
		buf = p.appendTokenReads(buf, sectionSubject, a.subjectToken, a.subject == anonymousSubject, a, act, action, resource)
		buf = p.appendTokenReads(buf, sectionCaller, a.caller.token, a.caller.term == anonymousCaller, a, act, action, resource)
		buf = p.appendReads(buf, p.bounds[sectionAction], len(p.reads), a, act, action, resource)
	case keyRequest:
		buf = appendIdentity(buf, &a.subjectKey, a.subject)
		buf = appendIdentity(buf, &a.caller.key, a.caller.term)
		buf = appendCanonical(buf, action.Value)
		buf = appendCanonical(buf, resource.Value)
	}
	return sha256.Sum256(buf)
}

// appendTokenReads encodes the reads of section s (the subject or the
// caller): as encoded once for the plan when the section is the shared
// anonymous value, from vt's memo when vt, the token the section was built
// from, has one for p, else from the section's value (and then memoises
// them in vt).
func (p *keyPlan) appendTokenReads(buf []byte, s section, vt *verifiedToken, anonymous bool, a *asked, act *Action, action, resource *ast.Term) []byte {
	from, to := p.bounds[s], p.bounds[s+1]
	switch {
	case anonymous && p.anonymous[s] != nil:
		return append(buf, p.anonymous[s]...)
	case vt == nil || from == to:
		return p.appendReads(buf, from, to, a, act, action, resource)
	}
	if m := vt.memo.Load(); m != nil && m.plan == p.id && m.section == s {
		return append(buf, m.enc...)
	}
	n := len(buf)
	buf = p.appendReads(buf, from, to, a, act, action, resource)
	vt.memo.Store(&keyMemo{plan: p.id, section: s, enc: bytes.Clone(buf[n:])})
	return buf
}

// appendReads encodes p.reads[from:to].
func (p *keyPlan) appendReads(buf []byte, from, to int, a *asked, act *Action, action, resource *ast.Term) []byte {
	for i := from; i < to; i++ {
		r := &p.reads[i]
		var t *ast.Term
		switch r.section {
		case sectionSubject:
			t = a.subject
		case sectionCaller:
			t = a.caller.term
		case sectionAction:
			if action == nil {
				buf = appendActionField(buf, r, act)
				continue
			}
			t = action
		case sectionResource:
			t = resource
		}
		for _, k := range r.path {
			if t == nil {
				break
			}
			t = t.Get(k)
		}
		switch {
		case t == nil:
			buf = append(buf, tagAbsent)
		case r.kindOnly:
			buf = append(buf, kindTag(t.Value))
		default:
			buf = appendCanonical(buf, t.Value)
		}
	}
	return buf
}

// actionFromFields reports whether a key can read input.action from act's
// fields without building it: the plan reads named members of the action
// only, and act has neither a path nor properties (whose conversion and
// checks only building does), so every member but name and method is
// absent.
func (p *keyPlan) actionFromFields(act *Action) bool {
	return p.mode == keyReads && p.actionFields && act.Path == "" && len(act.Properties) == 0
}

// appendActionField encodes what read r finds in the input.action that
// actionTerm would build from act, when actionFromFields(act): the name,
// the method, or nothing.
func appendActionField(buf []byte, r *inputRead, a *Action) []byte {
	var s string
	switch r.field {
	case fieldName:
		s = a.Name
	case fieldMethod:
		s = a.Method
	}
	switch {
	case s == "" || len(r.path) > 1: // absent, or below a string
		return append(buf, tagAbsent)
	case r.kindOnly:
		return append(buf, tagString)
	}
	return appendText(append(buf, tagString), s)
}

// Tags of the canonical encoding.
const (
	tagAbsent   = 0
	tagNull     = 'n'
	tagFalse    = 'f'
	tagTrue     = 't'
	tagNumber   = 'N'
	tagString   = 'S'
	tagArray    = 'A'
	tagObject   = 'O'
	tagSet      = 'E'
	tagOther    = 'X'
	tagIdentity = 'I' // a credential's hash stands for the value it proves
)

// appendIdentity encodes a subject or caller in a request key: by the hash
// of its credential (a token, a certificate, a mesh principal), which
// determines the value the engine builds from it, or when there is none
// (anonymous, asserted) by the value itself.
func appendIdentity(buf []byte, key *cacheKey, t *ast.Term) []byte {
	if *key != (cacheKey{}) {
		buf = append(buf, tagIdentity)
		return append(buf, key[:]...)
	}
	return appendCanonical(buf, t.Value)
}

// kindTag is the tag of v's type.
func kindTag(v ast.Value) byte {
	switch v := v.(type) {
	case ast.Null:
		return tagNull
	case ast.Boolean:
		if v {
			return tagTrue
		}
		return tagFalse
	case ast.Number:
		return tagNumber
	case ast.String:
		return tagString
	case *ast.Array:
		return tagArray
	case ast.Object:
		return tagObject
	case ast.Set:
		return tagSet
	}
	return tagOther
}

// appendCanonical appends the canonical encoding of v: its type tag, then
// for scalars the length and text, for collections the length and the
// elements (objects by sorted key, sets sorted, as OPA orders them).
func appendCanonical(buf []byte, v ast.Value) []byte {
	switch v := v.(type) {
	case ast.Null, ast.Boolean:
		return append(buf, kindTag(v))
	case ast.Number:
		return appendText(append(buf, tagNumber), string(v))
	case ast.String:
		return appendText(append(buf, tagString), string(v))
	case *ast.Array:
		buf = binary.AppendUvarint(append(buf, tagArray), uint64(v.Len()))
		for i := range v.Len() {
			buf = appendCanonical(buf, v.Elem(i).Value)
		}
		return buf
	case ast.Object:
		// Keys, not Foreach: a closure would move buf to the heap.
		buf = binary.AppendUvarint(append(buf, tagObject), uint64(v.Len()))
		for _, k := range v.Keys() {
			buf = appendCanonical(buf, k.Value)
			buf = appendCanonical(buf, v.Get(k).Value)
		}
		return buf
	case ast.Set:
		buf = binary.AppendUvarint(append(buf, tagSet), uint64(v.Len()))
		for _, x := range v.Slice() {
			buf = appendCanonical(buf, x.Value)
		}
		return buf
	}
	// Never in a document the engine builds (refs, variables,
	// comprehensions); encoded by their text all the same.
	return appendText(append(buf, tagOther), v.String())
}

func appendText(buf []byte, s string) []byte {
	return append(binary.AppendUvarint(buf, uint64(len(s))), s...)
}

// claimBytes estimates the memory of the OPA value that a decoded JSON
// value (as token.Verified.Claims holds them) converts to, in bytes, for
// the token cache's bound: a term per value, strings and numbers by length,
// collections by their elements and per-element bookkeeping. It walks the
// Go value, which costs no sorting and no allocation, not the converted one.
func claimBytes(x any) int {
	n := 32
	switch v := x.(type) {
	case string:
		n += 16 + len(v)
	case json.Number:
		n += 16 + len(v)
	case []any:
		n += 64 + 16*len(v)
		for _, e := range v {
			n += claimBytes(e)
		}
	case map[string]any:
		n += 96
		for k, e := range v {
			n += 80 + 48 + len(k) + claimBytes(e)
		}
	}
	return n
}
