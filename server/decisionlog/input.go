package decisionlog

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// DefaultMaxRecordBytes bounds one record when Options.MaxRecordBytes is 0.
const DefaultMaxRecordBytes = 64 << 10

// LargestRecordBytes is the largest Options.MaxRecordBytes accepted: the
// longest line verdict replay reads.
const LargestRecordBytes = 4 << 20

// pointer is a parsed JSON pointer (RFC 6901) into a record's input: its
// reference tokens after "/input".
type pointer []string

// parsePointer parses a pointer relative to the record, which must address
// something inside the input document ("/input/subject/claims/email").
func parsePointer(p string) (pointer, error) {
	const root = "/input/"
	if !strings.HasPrefix(p, root) || len(p) == len(root) {
		return nil, fmt.Errorf("%q: a pointer must address a field of the input (/input/subject/...)", p)
	}
	parts := strings.Split(p[len(root):], "/")
	for i, t := range parts {
		if strings.Contains(strings.ReplaceAll(strings.ReplaceAll(t, "~0", ""), "~1", ""), "~") {
			return nil, fmt.Errorf("%q: bad escape in token %q (~0 is ~, ~1 is /)", p, t)
		}
		parts[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return parts, nil
}

// MinHashKeyBytes is the shortest Options.HashKey accepted: HMAC-SHA256's
// own output size.
const MinHashKeyBytes = 32

// inputShaper turns a decision's input document into what a record holds:
// masked fields removed, hashed fields replaced by their hash.
type inputShaper struct {
	mask, hash []pointer
	key        []byte // HMAC key of the hashes; nil for plain SHA-256
}

func newInputShaper(mask, hash []string, key []byte) (*inputShaper, error) {
	switch {
	case key != nil && len(hash) == 0:
		return nil, fmt.Errorf("%w: a hash key without fields to hash", ErrOptions)
	case key != nil && len(key) < MinHashKeyBytes:
		return nil, fmt.Errorf("%w: the hash key has %d bytes, want at least %d", ErrOptions, len(key), MinHashKeyBytes)
	}
	s := &inputShaper{key: bytes.Clone(key)}
	named := map[string]bool{} // every pointer given, masked or hashed
	add := func(to *[]pointer, p pointer) {
		if !named[strings.Join(p, "/")] { // once: a field hashed twice is a hash of its hash
			named[strings.Join(p, "/")] = true
			*to = append(*to, p)
		}
	}
	for _, m := range mask {
		p, err := parsePointer(m)
		if err != nil {
			return nil, fmt.Errorf("%w: mask %w", ErrOptions, err)
		}
		add(&s.mask, p)
	}
	for _, h := range hash {
		p, err := parsePointer(h)
		if err != nil {
			return nil, fmt.Errorf("%w: hash %w", ErrOptions, err)
		}
		add(&s.hash, p)
	}
	// A field holding another's value, whole or in part, follows it: a
	// party's id and the fields it is read from, all of them, each way;
	// the action's path and its segments. Only the fields named are
	// followed, and a field named itself stays as named.
	for _, list := range []*[]pointer{&s.mask, &s.hash} {
		for _, p := range slices.Clone(*list) {
			for _, f := range linkedFields(p) {
				add(list, f)
			}
		}
	}
	return s, nil
}

// idSources are the fields an identity in the input is read from: a
// subject's id is its token's sub; a caller's is its certificate's SPIFFE
// ID, DNS name or subject, or its token's azp, client_id or sub (which a
// service's token often all set to one value). A hashed
// /input/subject/id beside the same value in the clear at
// /input/subject/claims/sub would hide nothing, nor would the reverse.
var idSources = map[string][]pointer{
	"subject": {{"claims", "sub"}},
	"caller": {{"claims", "azp"}, {"claims", "client_id"}, {"claims", "sub"}, {"spiffe_id"},
		{"certificate", "uris"}, {"certificate", "dns_names"}, {"certificate", "subject"}},
}

// linkedFields returns the fields that may hold p's value, or part of it,
// elsewhere in the input: for a party's id, or a field it is read from (or
// a field inside or holding one, short of the party itself), the id and
// every field it is read from; for the action's path, its segments, and
// for the segments or one of them, the path.
func linkedFields(p pointer) []pointer {
	if len(p) >= 2 {
		if srcs, ok := idSources[p[0]]; ok {
			group := []pointer{{p[0], "id"}}
			for _, src := range srcs {
				group = append(group, append(pointer{p[0]}, src...))
			}
			if slices.ContainsFunc(group, func(f pointer) bool { return p.under(f) || f.under(p) }) {
				return group
			}
		}
	}
	path, segments := pointer{"action", "path"}, pointer{"action", "segments"}
	switch {
	case slices.Equal(p, path):
		return []pointer{segments}
	case p.under(segments):
		return []pointer{path}
	}
	return nil
}

// shapeTop applies the masks and hashes to the record's own copies of
// input fields (subject_id, caller_id and the action's name, method and
// path), so that a value masked in the input does not stand beside it: a
// pointer to such a field, or to a document holding it (/input/subject),
// removes or hashes it there too.
func (s *inputShaper) shapeTop(r *Record) {
	fields := []struct {
		at pointer
		v  *string
	}{
		{pointer{"subject", "id"}, &r.SubjectID},
		{pointer{"caller", "id"}, &r.CallerID},
		{pointer{"action", "name"}, &r.Action.Name},
		{pointer{"action", "method"}, &r.Action.Method},
		{pointer{"action", "path"}, &r.Action.Path},
	}
	for _, f := range fields {
		if *f.v == "" {
			continue
		}
		if slices.ContainsFunc(s.mask, f.at.under) {
			*f.v = ""
		} else if slices.ContainsFunc(s.hash, f.at.under) {
			*f.v = s.hashJSON(*f.v)
		}
	}
}

// under reports whether p lies at or below q.
func (p pointer) under(q pointer) bool {
	return len(q) <= len(p) && slices.Equal(p[:len(q)], q)
}

// hashJSON returns "sha256:" and the hex SHA-256 of v's JSON, or with a
// key, "hmac-sha256:" and the hex HMAC-SHA256 of it under the key.
func (s *inputShaper) hashJSON(v any) string {
	b, _ := json.Marshal(v)
	if s.key == nil {
		sum := sha256.Sum256(b)
		return "sha256:" + hex.EncodeToString(sum[:])
	}
	m := hmac.New(sha256.New, s.key)
	m.Write(b)
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil))
}

// encode returns the input's JSON as the record holds it.
func (s *inputShaper) encode(v ast.Value) ([]byte, error) {
	native, err := ast.JSON(v)
	if err != nil {
		return nil, err
	}
	for _, p := range s.mask {
		apply(native, p, func(any) (any, bool) { return nil, false })
	}
	for _, p := range s.hash {
		apply(native, p, func(old any) (any, bool) { return s.hashJSON(old), true })
	}
	return json.Marshal(native)
}

// apply replaces the value p addresses in doc with f's result, or removes
// it when f says so (keep false): a removed array element becomes null, so
// that the other elements keep their positions. Nothing happens when p
// addresses nothing.
func apply(doc any, p pointer, f func(old any) (repl any, keep bool)) {
	cur := doc
	for i, tok := range p {
		last := i == len(p)-1
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[tok]
			if !ok {
				return
			}
			if last {
				if repl, keep := f(next); keep {
					c[tok] = repl
				} else {
					delete(c, tok)
				}
				return
			}
			cur = next
		case []any:
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 || n >= len(c) {
				return
			}
			if last {
				repl, _ := f(c[n])
				c[n] = repl
				return
			}
			cur = c[n]
		default:
			return
		}
	}
}
