package server

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/verdict-pdp/verdict/authz"
)

func TestDecodeDecide(t *testing.T) {
	tests := []struct {
		name    string
		body    string
		want    decideBody
		wantErr string
	}{
		{name: "action string", body: `{"action": "orders:read"}`, want: decideBody{Action: authz.Action{Name: "orders:read"}}},
		{name: "everything",
			body: `{"token": "a.b.c", "caller": {"token": "c.d.e"}, "action": {"name": "a", "method": "GET", "path": "/x"},
				"resource": {"Owner": 1, "owner": 2.5, "tags": ["a", null, true]}, "context": {"request_id": "r", "remote_addr": "192.0.2.1", "attributes": {"X": [1, {"y": 2}]}}}`,
			want: decideBody{Token: "a.b.c", Caller: &callerBody{Token: "c.d.e"}, Action: authz.Action{Name: "a", Method: "GET", Path: "/x"},
				Resource: map[string]any{"Owner": jsonNum("1"), "owner": jsonNum("2.5"), "tags": []any{"a", nil, true}},
				Context:  &contextBody{RequestID: "r", RemoteAddr: "192.0.2.1", Attributes: map[string]any{"X": []any{jsonNum("1"), map[string]any{"y": jsonNum("2")}}}}}},
		{name: "nulls", body: `{"token": null, "caller": null, "action": null, "resource": null, "context": null}`},
		{name: "escapes", body: `{"action": "x\"y\u00e9"}`, want: decideBody{Action: authz.Action{Name: "x\"yé"}}},

		{name: "case variant", body: `{"ACTION": "catalog:read"}`, wantErr: `unknown field "ACTION"`},
		{name: "case variant in action", body: `{"action": {"Name": "x"}}`, wantErr: `unknown field "action.Name"`},
		{name: "case variant in caller", body: `{"caller": {"Token": "x"}}`, wantErr: `unknown field "caller.Token"`},
		{name: "duplicate", body: `{"action": "orders:delete", "action": "catalog:read"}`, wantErr: `duplicate member name at /action`},
		{name: "duplicate by escape", body: `{"\u0061ction": "orders:delete", "action": "catalog:read"}`, wantErr: `duplicate member name`},
		{name: "duplicate in resource", body: `{"action": "x", "resource": {"id": 1, "id": 2}}`, wantErr: `duplicate member name at /resource/id`},
		{name: "duplicate deep", body: `{"action": "x", "resource": {"list": [{"a": 1, "a": 2}]}}`, wantErr: `duplicate member name`},
		{name: "duplicate in attributes", body: `{"action": "x", "context": {"attributes": {"t": 1, "t": 1}}}`, wantErr: `duplicate member name`},
		{name: "trailing comma", body: `{"action": "x",}`, wantErr: `malformed JSON`},
		{name: "missing colon", body: `{"action" "x"}`, wantErr: `malformed JSON`},
		{name: "truncated", body: `{"action": "x"`, wantErr: `unexpected end`},
		{name: "two objects", body: `{"action": "x"} {}`, wantErr: `unexpected data after`},
		{name: "not an object", body: `["action"]`, wantErr: `want a JSON object, got an array`},
		{name: "action a number", body: `{"action": 1}`, wantErr: `"action": must be a string or an object`},
		{name: "token a number", body: `{"token": 1}`, wantErr: `field "token": want a string, got a number`},
		{name: "resource an array", body: `{"resource": []}`, wantErr: `field "resource": want an object, got an array`},
		{name: "invalid UTF-8", body: "{\"action\": \"\xff\"}", wantErr: `not valid UTF-8`},
		{name: "lone surrogate", body: `{"action": "\ud800"}`, wantErr: `malformed JSON`},
		{name: "empty", body: " ", wantErr: `empty body`},
		{name: "too deep", body: `{"resource": ` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, wantErr: `nested deeper than 32`},
		{name: "caller with both", body: `{"caller": {"token": "t", "certificate": "c"}}`, wantErr: `give a token or a certificate, not both`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got decideBody
			err := newJSONReader().decodeDecide([]byte(tc.body), DefaultMaxJSONDepth, &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, authz.ErrInvalidRequest) {
					t.Fatalf("err = %v, want a bad request containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// TestDecodeDecideReuse: a pooled reader carries nothing from one body to
// the next (names seen, depth, errors).
func TestDecodeDecideReuse(t *testing.T) {
	var p jsonReaders
	for i := range 3 {
		r := p.get()
		var in decideBody
		if err := r.decodeDecide([]byte(`{"action": "x", "resource": {"id": 1}}`), DefaultMaxJSONDepth, &in); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		p.put(r)
		r = p.get()
		if err := r.decodeDecide([]byte(`{"action": `), DefaultMaxJSONDepth, &in); err == nil {
			t.Fatalf("round %d: truncated body accepted", i)
		}
		p.put(r)
	}
}

func TestCheckJSONContentType(t *testing.T) {
	for ct, ok := range map[string]bool{
		"application/json":                  true,
		"application/json; charset=utf-8":   true,
		"Application/JSON; charset=UTF-8":   true,
		"":                                  false,
		"application/x-www-form-urlencoded": false,
		"text/plain":                        false,
		"application/json; charset=latin1":  false,
		"application/jsonx":                 false,
		"application/json;;":                false,
	} {
		err := checkJSONContentType(http.Header{"Content-Type": {ct}})
		if (err == nil) != ok || (err != nil && !errors.Is(err, errUnsupportedMediaType)) {
			t.Errorf("%q: %v, want ok=%v", ct, err, ok)
		}
	}
	// A compressed body is refused as such, not read as malformed JSON.
	for ce, ok := range map[string]bool{"": true, "identity": true, "gzip": false, "br": false, "gzip, identity": false} {
		err := checkJSONContentType(http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {ce}})
		if (err == nil) != ok || (err != nil && !errors.Is(err, errUnsupportedMediaType)) {
			t.Errorf("Content-Encoding %q: %v, want ok=%v", ce, err, ok)
		}
	}
}

// manyKeysBody is the worst case the old duplicate-member check was
// quadratic in: a body at the size limit made of distinct short names.
func manyKeysBody(size int) []byte {
	var b strings.Builder
	b.WriteString(`{"action":"x","resource":{`)
	for i := 0; b.Len() < size-16; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"k%d":0`, i)
	}
	b.WriteString(`}}`)
	return []byte(b.String())
}

// flatBody is a body of the same size whose bytes are one long string.
func flatBody(size int) []byte {
	return []byte(`{"action":"x","resource":{"k":"` + strings.Repeat("a", size-34) + `"}}`)
}

func TestWorstCaseBodiesDecode(t *testing.T) {
	for _, body := range [][]byte{manyKeysBody(DefaultMaxBodyBytes), flatBody(DefaultMaxBodyBytes)} {
		if len(body) > DefaultMaxBodyBytes {
			t.Fatalf("body is %d bytes, over the limit", len(body))
		}
		var in decideBody
		if err := newJSONReader().decodeDecide(body, DefaultMaxJSONDepth, &in); err != nil {
			t.Fatal(err)
		}
	}
}

func jsonNum(s string) any { return jsonNumber(s) }
