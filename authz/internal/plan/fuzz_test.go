package plan_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// FuzzDifferential evaluates the engine's decision query on the default
// policy set, its example and the policies under testdata/policies with
// both evaluators, for input documents built from the fuzzer's bytes:
// mostly shaped as the engine builds them, with any field liable to be of
// the wrong type. The two must agree on every decision, or the compiled
// evaluator must refuse (the engine then asks topdown).
//
//	go test -run '^$' -fuzz FuzzDifferential ./authz/internal/plan
func FuzzDifferential(f *testing.F) {
	for _, in := range decisionInputs {
		f.Add([]byte(in))
	}
	for _, seed := range []string{"", "\x00", "\x01\x02\x03\x04\x05\x06\x07\x08\x09", "\xff\xfe\xfd\xfc\xfb\xfa"} {
		f.Add([]byte(seed))
	}
	sets := policySets(f)
	evs := make([]*evaluators, len(sets))
	for i, ps := range sets {
		evs[i] = ps.prepare(f, decisionQuery)
	}
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, b []byte) {
		input := fuzzInput(b)
		for i, ev := range evs {
			want, got := ev.evalBoth(t, "decision", input, now)
			if !want.equal(got) {
				t.Fatalf("%s, input %v:\ntopdown:  %v\ncompiled: %v", sets[i].name, input, want, got)
			}
		}
	})
}

// fuzzInput reads b as a JSON document when it is one, and otherwise
// builds an input document from it (see inputGen).
func fuzzInput(b []byte) ast.Value {
	var doc any
	if json.Unmarshal(b, &doc) == nil {
		if v, err := ast.InterfaceToValue(doc); err == nil {
			return v
		}
	}
	g := &inputGen{b: b}
	return ast.MustInterfaceToValue(g.input())
}

// inputGen turns bytes into an input document. Each byte is a choice; past
// the end every choice is 0, so any byte string yields a document.
type inputGen struct {
	b []byte
	i int
}

func (g *inputGen) next() int {
	if g.i >= len(g.b) {
		return 0
	}
	g.i++
	return int(g.b[g.i-1])
}

func (g *inputGen) pick(n int) int { return g.next() % n }

// words are the strings the policies under test look for.
var words = []string{
	"", "orders:read", "orders:write", "orders:delete", "catalog:read", "health:read",
	"inventory:reserve", "inventory:read", "billing:read", "orders:*", "x:y:z", ":",
	"GET", "get", "POST", "DELETE", "TRACE", "HEAD", "/orders/42", "//orders/",
	"/inventory:reserve", "/catalog:write/1", "/orders?limit=5", "/", "/health/live",
	"viewer", "editor", "admin", "payments", "orders", "monitor",
	"spiffe://verdict.example/ns/shop/sa/payments", "alice", "u1", "7", "42", "x",
	"trudy", "mallory", "acme", "evil", "Support", "finance", "admins", "ops",
	"tickets:read", "payments:refund", "users:read", "public:read", "_x", "token", "mtls",
	"none", "asserted", "2026-01-05T10:00:00Z", "2026-01-05T22:00:00Z", "yesterday",
	"10.66.1.2", "192.0.2.1", "203.0.113.9", "::1", "1KB", "3KiB", "2048", "lots",
	"v1.3.0", "1.1.9", "v2", "eyJzY29wZSI6InJlYWQifQ", "!!", "read", "write", "user",
	"todo", "can_read_todos", "can_delete_todo", "can_update_todo", "can_create_todo",
	"morty@the-citadel.com", "rick@the-citadel.com",
	"CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
	"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
	"CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs",
	"storage", "seats", "classified", "state", "archived", "tenant", "owner", "usage",
	"ünïcödé", "%s", "a,b",
}

func (g *inputGen) word() string {
	if g.pick(16) == 0 { // now and then a string of its own
		n := g.pick(6)
		bs := make([]byte, n)
		for i := range bs {
			bs[i] = byte(' ' + g.pick(95))
		}
		return string(bs)
	}
	return words[g.pick(len(words))]
}

func (g *inputGen) number() any {
	numbers := []any{0, 1, -1, 2, 3, 5, 7, 10, 11, 42, 2.5, 1e3, 7.0, json.Number("1e400"), json.Number("12345678901234567890")}
	return numbers[g.pick(len(numbers))]
}

// value is any JSON value, nested at most depth deep.
func (g *inputGen) value(depth int) any {
	kinds := 6
	if depth <= 0 {
		kinds = 4
	}
	switch g.pick(kinds) {
	case 0:
		return nil
	case 1:
		return g.pick(2) == 0
	case 2:
		return g.number()
	case 3:
		return g.word()
	case 4:
		arr := make([]any, g.pick(4))
		for i := range arr {
			arr[i] = g.value(depth - 1)
		}
		return arr
	}
	obj := map[string]any{}
	for range g.pick(4) {
		obj[g.word()] = g.value(depth - 1)
	}
	return obj
}

// field is usually a value of the expected kind, sometimes any value.
func (g *inputGen) field(expected func() any) any {
	if g.pick(8) == 0 {
		return g.value(2)
	}
	return expected()
}

func (g *inputGen) words(max int) func() any {
	return func() any {
		arr := make([]any, g.pick(max+1))
		for i := range arr {
			arr[i] = g.field(func() any { return g.word() })
		}
		return arr
	}
}

// object builds an object with some of the given fields, and now and then
// one the schema does not know.
func (g *inputGen) object(fields map[string]func() any) map[string]any {
	obj := map[string]any{}
	for _, k := range sortedKeys(fields) {
		if g.pick(4) != 0 {
			obj[k] = g.field(fields[k])
		}
	}
	if g.pick(8) == 0 {
		obj[g.word()] = g.value(1)
	}
	return obj
}

func (g *inputGen) input() map[string]any {
	word := func() any { return g.word() }
	boolean := func() any { return g.pick(2) == 0 }
	number := func() any { return g.number() }
	claims := func() any {
		return g.object(map[string]func() any{
			"sub": word, "iss": word, "roles": g.words(3), "groups": g.words(3), "tenants": g.words(2),
			"clearance": number, "uid": func() any { return g.field(number) }, "index": number,
			"level": number, "scopes": g.words(2), "quota": word, "azp": word,
		})
	}
	in := map[string]any{}
	parts := map[string]func() any{
		"subject": func() any {
			return g.object(map[string]func() any{
				"authenticated": boolean, "method": word, "id": word, "issuer": word,
				"type": word, "claims": claims, "properties": func() any { return g.value(2) },
			})
		},
		"caller": func() any {
			return g.object(map[string]func() any{
				"authenticated": boolean, "id": word, "method": word, "spiffe_id": word, "claims": claims,
			})
		},
		"action": func() any {
			return g.object(map[string]func() any{
				"name": word, "method": word, "path": word, "segments": g.words(3),
				"properties": func() any { return g.value(2) },
			})
		},
		"resource": func() any {
			return g.object(map[string]func() any{
				"tenant": word, "owner": word, "type": word, "id": word, "size": word,
				"classified": boolean, "state": word,
				"usage":      func() any { return map[string]any{g.word(): g.number()} },
				"properties": func() any { return map[string]any{"ownerID": g.word()} },
			})
		},
		"context": func() any {
			return g.object(map[string]func() any{
				"time": word, "request_id": word, "remote_addr": word,
				"attributes": func() any {
					return g.object(map[string]func() any{"client": word, "payload": word})
				},
			})
		},
	}
	for _, k := range sortedKeys(parts) {
		if g.pick(6) != 0 {
			in[k] = parts[k]()
		}
	}
	return in
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	return keys
}

// TestDifferentialSample runs the fuzz target's comparison on a fixed set
// of generated inputs, so that plain `go test` covers it too.
func TestDifferentialSample(t *testing.T) {
	sets := policySets(t)
	now := time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)
	refused, differs := map[string]int{}, map[string]int{}
	for _, ps := range sets {
		ev := ps.prepare(t, decisionQuery)
		rnd := rand.New(rand.NewPCG(1, 2))
		for range 2000 {
			b := make([]byte, 20+rnd.IntN(200))
			for j := range b {
				b[j] = byte(rnd.Uint32())
			}
			input := fuzzInput(b)
			want, got := ev.evalBoth(t, "decision", input, now)
			if !want.equal(got) {
				t.Fatalf("%s, input %v:\ntopdown:  %v\ncompiled: %v", ps.name, input, want, got)
			}
			if got.refused != "" {
				refused[ps.name]++
			}
			if got.differs {
				differs[ps.name]++
			}
		}
	}
	t.Logf("inputs left to topdown, by policy set: %v; of which the compiled evaluator erred where topdown did not: %v", refused, differs)
}
