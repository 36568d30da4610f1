package server

import (
	"strings"
	"testing"
)

func TestCheckKeys(t *testing.T) {
	tests := []struct {
		body    string
		wantErr string
	}{
		{`{"action": "orders:read", "resource": {"Owner": 1, "owner": 2}}`, ""},
		{`{"action": {"name": "a", "method": "GET"}, "context": {"attributes": {"X": [1, {"y": 2}]}}}`, ""},
		{`{"ACTION": "catalog:read"}`, `unknown field "ACTION"`},
		{`{"action": {"Name": "x"}}`, `unknown field "Name"`},
		{`{"caller": {"Token": "x"}}`, `unknown field "Token"`},
		{`{"action": "orders:delete", "action": "catalog:read"}`, `duplicate member "action"`},
		{`{"\u0061ction": "orders:delete", "action": "catalog:read"}`, `duplicate member "action"`},
		{`{"action": "x", "resource": {"id": 1, "id": 2}}`, `duplicate member "id"`},
		{`{"action": "x", "resource": {"list": [{"a": 1, "a": 2}]}}`, `duplicate member "a"`},
		{`{"action": "x", "context": {"attributes": {"t": 1, "t": 1}}}`, `duplicate member "t"`},
		{`{"action": "x",}`, ""},   // malformed: left to the decoder
		{`{"action" "x"}`, ""},     // malformed: left to the decoder
		{`{"action": "x\"y"}`, ""}, // escaped quote inside a value
	}
	for _, tc := range tests {
		err := checkKeys([]byte(tc.body))
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.body, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want %s", tc.body, err, tc.wantErr)
		}
	}
}
