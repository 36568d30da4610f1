package token

import (
	"encoding/json"
	"hash/maphash"
	"strings"
	"sync/atomic"
)

// header is what verify reads from a token's JOSE header. It is immutable
// once parsed.
type header struct {
	alg    string
	spec   algSpec
	kid    string
	typ    string
	hasTyp bool
}

// parseHeader decodes and checks a token's header segment (base64url of a
// JSON object): alg a supported algorithm and never none, no crit, kid and
// typ strings when present.
func parseHeader(segment string) (*header, error) {
	hb, err := b64.DecodeString(segment)
	if err != nil {
		return nil, fail(ErrMalformed, "header is not base64url")
	}
	var fields map[string]any
	if err := json.Unmarshal(hb, &fields); err != nil || fields == nil {
		return nil, fail(ErrMalformed, "header is not a json object")
	}
	h := &header{}
	if h.alg, err = headerString(fields, "alg"); err != nil {
		return nil, err
	}
	switch {
	case h.alg == "":
		return nil, fail(ErrMalformed, "header has no alg")
	case strings.EqualFold(h.alg, "none"):
		return nil, fail(ErrDisallowedAlg, "alg none is never accepted")
	}
	var ok bool
	if h.spec, ok = algs[h.alg]; !ok {
		return nil, fail(ErrDisallowedAlg, "alg is not supported")
	}
	if _, ok := fields["crit"]; ok {
		return nil, fail(ErrMalformed, "crit header is not supported")
	}
	if h.kid, err = headerString(fields, "kid"); err != nil {
		return nil, err
	}
	if h.typ, err = headerString(fields, "typ"); err != nil {
		return nil, err
	}
	_, h.hasTyp = fields["typ"]
	return h, nil
}

// headerString reads an optional string header parameter.
func headerString(fields map[string]any, name string) (string, error) {
	if s, ok := stringMember(fields, name); ok {
		return s, nil
	}
	return "", fail(ErrMalformed, name+" header is not a string")
}

// Header cache bounds: how many parsed headers a Verifier keeps, and the
// longest header segment it keeps one for.
const (
	headerSlots         = 64
	maxCachedHeaderSize = 512
)

// headerCache keeps recently parsed headers by their segment. An issuer
// signs every token with the same few headers ({"alg":"RS256","kid":"k1",
// "typ":"JWT"}), so a new token's header is almost always one seen before:
// the cache spares its base64 and JSON decoding. A header is a pure
// function of its segment, so a hit is exactly what parsing would give.
//
// It is direct-mapped and lock-free: a segment has one slot (by hash), a
// store replaces whatever the slot held, and a lookup compares the whole
// segment. Its memory is bounded by headerSlots entries of at most
// maxCachedHeaderSize bytes, whatever the tokens presented; a flood of
// distinct headers only costs the hits it displaces. Only headers that
// parse are kept.
type headerCache struct {
	seed  maphash.Seed
	slots [headerSlots]atomic.Pointer[cachedHeader]
}

type cachedHeader struct {
	segment string
	header  *header
}

func newHeaderCache() *headerCache {
	return &headerCache{seed: maphash.MakeSeed()}
}

// parse returns the parsed header for segment, from the cache when the
// same segment was parsed before.
func (c *headerCache) parse(segment string) (*header, error) {
	if len(segment) > maxCachedHeaderSize {
		return parseHeader(segment)
	}
	slot := &c.slots[maphash.String(c.seed, segment)%headerSlots]
	if e := slot.Load(); e != nil && e.segment == segment {
		return e.header, nil
	}
	h, err := parseHeader(segment)
	if err != nil {
		return nil, err
	}
	// The token's string may be a slice of a larger buffer (a request
	// header): keep a copy of the segment alone.
	slot.Store(&cachedHeader{segment: strings.Clone(segment), header: h})
	return h, nil
}
