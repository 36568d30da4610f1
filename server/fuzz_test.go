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
		err := newJSONReader().decodeDecide(data, DefaultMaxJSONDepth, &in)
		if err != nil {
			if !errors.Is(err, authz.ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap authz.ErrInvalidRequest", err)
			}
			return
		}
		if !json.Valid(data) {
			t.Fatalf("accepted invalid JSON %q", data)
		}
		if !jsontext.Value(data).IsValid() {
			t.Fatalf("accepted %q, which has duplicate names or invalid UTF-8", data)
		}
		if in.Caller != nil && in.Caller.Token != "" && in.Caller.Certificate != "" {
			t.Fatal("accepted a caller with a token and a certificate")
		}
		if depth(data) > DefaultMaxJSONDepth {
			t.Fatalf("accepted depth %d", depth(data))
		}
	})
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

// FuzzForwardedCert: the XFCC and escaped-PEM parsers never panic; what
// they accept holds a PEM boundary, and the chain parser never panics on it.
func FuzzForwardedCert(f *testing.F) {
	ca := newTestCA(f, "fuzz ca")
	leaf := ca.issue(f, leafOptions{cn: "svc", uris: []string{"spiffe://verdict.example/ns/a/sa/b"}})
	f.Add(xfcc(leaf.pem()))
	f.Add(xfcc(leaf.pem()) + "," + xfcc(ca.pem()))
	f.Add(escapedPEM(leaf.pem()))
	f.Add(`By=x;Hash=y;Subject="a,b;c=\"d\"";URI=;DNS=a;DNS=b`)
	f.Add(`Cert="%zz"`)
	f.Add(`Cert="-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----"`)
	f.Add(`"`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, v string) {
		for name, parse := range map[string]func(string) ([]byte, error){"xfcc": ParseXFCC, "escaped": ParseEscapedPEM} {
			out, err := parse(v)
			if err != nil {
				if !errors.Is(err, ErrForwardedCert) {
					t.Fatalf("%s: error %v does not wrap ErrForwardedCert", name, err)
				}
				continue
			}
			if !bytes.Contains(out, []byte("-----BEGIN ")) {
				t.Fatalf("%s: accepted %q without a PEM boundary", name, out)
			}
			if leaf, _, err := parseChain(out); err == nil && leaf == nil {
				t.Fatalf("%s: parseChain returned no leaf and no error", name)
			}
		}
	})
}
