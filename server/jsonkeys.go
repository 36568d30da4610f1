package server

import (
	"encoding/json"
	"errors"
	"slices"
)

// objectShape lists the member names a fixed-shape object of the decide
// body may have, and the shape of each member's value when that value is an
// object (nil: free-form).
type objectShape map[string]objectShape

// decideShape is the /v1/decide body. resource and context.attributes are
// free-form.
var decideShape = objectShape{
	"token":    nil,
	"caller":   {"token": nil, "certificate": nil},
	"action":   {"name": nil, "method": nil, "path": nil},
	"resource": nil,
	"context":  {"request_id": nil, "remote_addr": nil, "attributes": nil},
}

// errJSONSyntax stops the key check on malformed JSON, which the decoder
// then reports with a better message.
var errJSONSyntax = errors.New("json syntax")

// checkKeys refuses what encoding/json would silently accept: a member name
// repeated in one object (the decoder keeps the last), and, in the body's
// fixed-shape objects, a name that matches a field only case-insensitively
// ({"ACTION": ...}). Either would let a gateway or an audit log that reads
// names exactly see another request than the policy does. Nesting is
// already bounded by checkDepth.
func checkKeys(data []byte) error {
	s := keyScanner{data: data}
	s.space()
	if err := s.value(decideShape, true); err != nil && !errors.Is(err, errJSONSyntax) {
		return err
	}
	return nil
}

type keyScanner struct {
	data []byte
	i    int
}

func (s *keyScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// value scans one JSON value; shaped says shape applies to it.
func (s *keyScanner) value(shape objectShape, shaped bool) error {
	if s.i >= len(s.data) {
		return errJSONSyntax
	}
	switch s.data[s.i] {
	case '{':
		return s.object(shape, shaped)
	case '[':
		s.i++
		s.space()
		if s.i < len(s.data) && s.data[s.i] == ']' {
			s.i++
			return nil
		}
		for {
			s.space()
			if err := s.value(nil, false); err != nil {
				return err
			}
			s.space()
			if s.i >= len(s.data) {
				return errJSONSyntax
			}
			switch s.data[s.i] {
			case ',':
				s.i++
			case ']':
				s.i++
				return nil
			default:
				return errJSONSyntax
			}
		}
	case '"':
		_, err := s.str()
		return err
	}
	for s.i < len(s.data) { // a number, true, false or null
		switch s.data[s.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			return nil
		}
		s.i++
	}
	return nil
}

func (s *keyScanner) object(shape objectShape, shaped bool) error {
	s.i++ // '{'
	var seen []string
	for {
		s.space()
		if s.i >= len(s.data) {
			return errJSONSyntax
		}
		if s.data[s.i] == '}' {
			s.i++
			return nil
		}
		if s.data[s.i] == ',' && len(seen) > 0 {
			s.i++
			s.space()
		}
		if s.i >= len(s.data) || s.data[s.i] != '"' {
			return errJSONSyntax
		}
		name, err := s.str()
		if err != nil {
			return err
		}
		if slices.Contains(seen, name) {
			return badBody("duplicate member %q", truncate(name, 64))
		}
		seen = append(seen, name)
		child, known := shape[name]
		if shaped && !known {
			return badBody("unknown field %q", truncate(name, 64))
		}
		s.space()
		if s.i >= len(s.data) || s.data[s.i] != ':' {
			return errJSONSyntax
		}
		s.i++
		s.space()
		if err := s.value(child, shaped && child != nil); err != nil {
			return err
		}
	}
}

// str scans a string and returns its decoded value.
func (s *keyScanner) str() (string, error) {
	start := s.i
	escaped := false
	for s.i++; s.i < len(s.data); s.i++ {
		switch s.data[s.i] {
		case '\\':
			escaped = true
			s.i++
		case '"':
			s.i++
			raw := s.data[start:s.i]
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var out string
			if json.Unmarshal(raw, &out) != nil {
				return "", errJSONSyntax
			}
			return out, nil
		}
	}
	return "", errJSONSyntax
}
