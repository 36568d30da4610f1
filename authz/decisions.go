package authz

import (
	"crypto/sha256"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// verifiedToken is what the engine keeps about a token it has verified:
// the ready-made subject and caller values, so a repeat decision builds no
// claims at all.
type verifiedToken struct {
	subject   *ast.Term // input.subject
	caller    *ast.Term // input.caller, when the token is a service token
	subjectID string
	callerID  string
	issuer    string
	keyID     string
	content   [32]byte  // SHA-256 of the signed content (header.payload)
	expires   time.Time // never later than the token's exp
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

// decisionKey identifies a request to the decision cache: the verified
// subject token, the caller credential and the action, exactly. A request
// with a resource is never looked up, and input.context cannot matter
// because only policies that never read it are cached.
func decisionKey(subject, caller *cacheKey, a *Action) cacheKey {
	h := sha256.New()
	h.Write(subject[:])
	h.Write(caller[:])
	for _, s := range [...]string{a.Name, a.Method, a.Path} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	var k cacheKey
	h.Sum(k[:0])
	return k
}

// timeDependent lists builtins whose answer depends on the clock even though
// OPA does not mark them nondeterministic.
var timeDependent = map[string]bool{
	"io.jwt.decode_verify":                                   true,
	"crypto.x509.parse_and_verify_certificates":              true,
	"crypto.x509.parse_and_verify_certificates_with_options": true,
}

// decisionCacheability reports whether every answer of the compiled policy
// is a pure function of subject, caller, action and resource, so that the
// same request may be answered from a cache until the snapshot changes. It
// is not when any rule reads input.context (time, request id, remote
// address, attributes) or the input document as a whole, or uses a
// nondeterministic or clock-dependent builtin (called, or named in `with`) (time.now_ns, http.send,
// rand.intn, uuid.rfc4122, opa.runtime, ...). The note says why.
func decisionCacheability(c *ast.Compiler) (bool, string) {
	reason := ""
	for _, name := range slices.Sorted(maps.Keys(c.Modules)) {
		ast.WalkRefs(c.Modules[name], func(r ast.Ref) bool {
			if reason != "" {
				return true
			}
			// A builtin named anywhere, called or not (`with f as
			// http.send` names it without calling it).
			if op := r.String(); timeDependent[op] {
				reason = "the policy uses " + op
			} else if b, ok := ast.BuiltinMap[op]; ok && b.Nondeterministic {
				reason = "the policy uses " + op
			}
			if reason != "" || !r.HasPrefix(ast.InputRootRef) {
				return reason != ""
			}
			if len(r) < 2 {
				reason = "the policy reads the whole input document"
				return true
			}
			switch part := r[1].Value.(type) {
			case ast.String:
				if part == "context" {
					reason = "the policy reads input.context"
				}
			default:
				reason = "the policy reads input with a computed key"
			}
			return reason != ""
		})
		if reason != "" {
			return false, "off: " + reason + " (" + strings.TrimPrefix(name, "verdict:") + ")"
		}
	}
	return true, "on"
}
