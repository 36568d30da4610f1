package jsonw_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/verdict-pdp/verdict/internal/jsonw"
)

// TestAppendStringMatchesEncodingJSON: every string round-trips through
// encoding/json to what encoding/json itself would have written.
func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"uote\back`, "ctl\x00\x1f\t\r\n", "bad\xffutf8\xc3", "ünï\u2028\u2029😀", "<&>"} {
		got := jsonw.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q: %v (%s)", s, err, got)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: round trip %q, encoding/json %q", s, back, wantBack)
		}
	}
}

func TestAppendStrings(t *testing.T) {
	for _, ss := range [][]string{nil, {}, {""}, {"a"}, {"a", `b"c`, "\xff"}} {
		got := jsonw.AppendStrings([]byte("x"), ss)
		want, _ := json.Marshal(append([]string{}, ss...))
		var back, wantBack []string
		if err := json.Unmarshal(got[1:], &back); err != nil || got[0] != 'x' {
			t.Fatalf("%q: %s is not x followed by a JSON array: %v", ss, got, err)
		}
		_ = json.Unmarshal(want, &wantBack)
		if !slices.Equal(back, wantBack) || back == nil {
			t.Errorf("%q: round trip %q, encoding/json %q", ss, back, wantBack)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var back string
		if err := json.Unmarshal(jsonw.AppendString(nil, s), &back); err != nil {
			t.Fatalf("%q: not a JSON string: %v", s, err)
		}
	})
}
