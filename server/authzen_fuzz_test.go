package server

import (
	"errors"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
)

// FuzzDecodeAuthZEN: the AuthZEN decoder never panics; what it refuses is
// an invalid request; what it accepts is valid I-JSON (UTF-8, unique
// member names) within the depth limit and the item bound, and each of
// its evaluations either is complete or is refused as one.
func FuzzDecodeAuthZEN(f *testing.F) {
	for _, s := range []string{
		`{"subject":{"type":"user","id":"a","properties":{"d":1}},"action":{"name":"read","properties":{"m":"GET"}},"resource":{"type":"doc","id":"1"},"context":{"t":"x"}}`,
		`{"subject":{"type":"user","id":"a"},"action":{"name":"read"},"evaluations":[{"resource":{"type":"doc","id":"1"}},{"resource":{"type":"doc","id":"2"},"action":{"name":"edit"}}],"options":{"evaluations_semantic":"deny_on_first_deny","x":[1]}}`,
		`{"evaluations":[],"options":null}`, `{"evaluations":[{},null]}`, `{"evaluations":{}}`,
		`{"subject":null,"x":{"y":[{"z":null}]},"resource":{"type":"t","id":"i","userID":"u"}}`,
		`{"subject":{"type":1}}`, `{"a":1,"a":2}`, `{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`,
		`[]`, `{`, "\xff", `{"subject":{"type":"\ud800","id":"x"}}`,
	} {
		f.Add([]byte(s), true)
		f.Add([]byte(s), false)
	}
	const maxItems = 4
	f.Fuzz(func(t *testing.T, data []byte, batch bool) {
		var in azBody
		if !decodedAsDocumented(t, data, newJSONReader().decodeAuthZEN(data, DefaultMaxJSONDepth, maxItems, batch, &in)) {
			return
		}
		if len(in.Evaluations) > maxItems || !batch && len(in.Evaluations) > 0 {
			t.Fatalf("accepted %d items (batch %v)", len(in.Evaluations), batch)
		}
		for i := -1; i < len(in.Evaluations); i++ {
			e, err := in.evaluation(i)
			if err != nil {
				if !errors.Is(err, authz.ErrInvalidRequest) {
					t.Fatalf("evaluation %d: %v is not an invalid request", i, err)
				}
				continue
			}
			if e.Subject.Type == "" || e.Subject.ID == "" || e.Action.Name == "" || e.Resource.Type == "" || e.Resource.ID == "" {
				t.Fatalf("evaluation %d is incomplete: %+v", i, e)
			}
		}
	})
}
