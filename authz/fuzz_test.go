package authz_test

import (
	"encoding/json"
	"path"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz"
)

const fuzzPolicy = `package authz

default allow := false

allow if input.action.segments[0] == "public"

reasons := {sprintf("%d", [count(input.resource)])}
`

// FuzzDecideInput feeds arbitrary actions, resources and attributes through
// input building and evaluation: nothing may panic, errors always deny, and
// an allow only happens for a path that really is under /public.
func FuzzDecideInput(f *testing.F) {
	f.Add("orders:read", "GET", "/public/x", `{"id": 1}`, `{"tenant": "acme"}`)
	f.Add("", "POST", "/public/../admin", `{}`, `null`)
	f.Add("", "", "/%2e%2e/public", `[]`, `{"a": {"b": [1, 2, {"c": null}]}}`)
	f.Add("x", "get", "public?x=/admin", `{"deep": [[[[[]]]]]}`, `1e400`)
	f.Add("", "GET", "/public%2F..%2Fadmin", ``, ``)
	e := newEngine(f, authz.Options{}, nil)
	if err := e.Load(f.Context(), policySnapshot(f, fuzzPolicy)); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, name, method, p, resource, attributes string) {
		req := authz.Request{Action: authz.Action{Name: name, Method: method, Path: p}}
		_ = json.Unmarshal([]byte(resource), &req.Resource)
		_ = json.Unmarshal([]byte(attributes), &req.Attributes)
		d, err := e.Decide(t.Context(), req)
		if err != nil {
			if d.Allow || len(d.Reasons) != 1 {
				t.Fatalf("error %v with decision %+v", err, d)
			}
			return
		}
		if d.Allow {
			clean := p
			if i := strings.IndexAny(clean, "?#"); i >= 0 {
				clean = clean[:i]
			}
			clean = path.Clean("/" + clean)
			if clean != "/public" && !strings.HasPrefix(clean, "/public/") {
				t.Fatalf("allowed path %q (clean %q)", p, clean)
			}
		}
	})
}
