package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/verdict-pdp/verdict/authz"
)

// FuzzDecodeDecideBody: any body either decodes into a request that passes
// the documented rules, or fails with an error that maps to 400; it never
// panics.
func FuzzDecodeDecideBody(f *testing.F) {
	for _, s := range []string{
		`{"action":"orders:read"}`,
		`{"token":"a.b.c","action":{"name":"orders:read","method":"GET","path":"/orders/1"}}`,
		`{"caller":{"token":"x"},"action":"inventory:reserve","resource":{"id":1,"tags":["a"]},"context":{"request_id":"r1","attributes":{"k":[1,{"x":null}]}}}`,
		`{"caller":{"certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},"action":"a"}`,
		`{"action":null}`, `{"action":"\ud800"}`, `{"action":1}`, `[]`, `{`, `{"a":"\"}`, "\xff",
		`{"resource":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var in decideBody
		if !decodedAsDocumented(t, data, newJSONReader().decodeDecide(data, DefaultMaxJSONDepth, &in)) {
			return
		}
		if in.Caller != nil && in.Caller.Token != "" && in.Caller.Certificate != "" {
			t.Fatal("accepted a caller with a token and a certificate")
		}
	})
}

// decodedAsDocumented holds what every body decoder promises, given the
// body and the decoder's error: what it refuses is an invalid request;
// what it accepts is valid I-JSON (UTF-8, unique member names) within
// DefaultMaxJSONDepth. It reports whether the body was accepted.
func decodedAsDocumented(t *testing.T, data []byte, err error) bool {
	t.Helper()
	if err != nil {
		if !errors.Is(err, authz.ErrInvalidRequest) {
			t.Fatalf("error %v does not wrap authz.ErrInvalidRequest", err)
		}
		return false
	}
	if !json.Valid(data) {
		t.Fatalf("accepted invalid JSON %q", data)
	}
	if !jsontext.Value(data).IsValid() {
		t.Fatalf("accepted %q, which has duplicate names or invalid UTF-8", data)
	}
	if depth(data) > DefaultMaxJSONDepth {
		t.Fatalf("accepted depth %d", depth(data))
	}
	return true
}

// depth is the nesting depth of valid JSON, by a slow, obvious method.
func depth(data []byte) int {
	dec := json.NewDecoder(bytes.NewReader(data))
	d, maxD := 0, 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return maxD
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			d++
			maxD = max(maxD, d)
		case json.Delim('}'), json.Delim(']'):
			d--
		}
	}
}
