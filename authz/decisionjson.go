package authz

import (
	"encoding/json"
	"slices"

	"github.com/verdict-pdp/verdict/internal/jsonw"
)

// AppendJSON appends d in the decision's JSON shape,
// {"decision_id","allow","reasons","headers"?,"revision"?,"explanation"?}, with the
// headers' names sorted. Headers are included only when withHeaders is true
// and d allows. It is the one encoder of a decision: MarshalJSON, the HTTP
// server and the middleware all use it.
func (d *Decision) AppendJSON(b []byte, withHeaders bool) []byte {
	b = append(b, `{"decision_id":`...)
	b = jsonw.AppendString(b, d.ID)
	if d.Allow {
		b = append(b, `,"allow":true`...)
	} else {
		b = append(b, `,"allow":false`...)
	}
	b = append(b, `,"reasons":`...)
	b = jsonw.AppendStrings(b, d.Reasons)
	if withHeaders && d.Allow && len(d.Headers) > 0 {
		b = append(b, `,"headers":{`...)
		var keysArr [8]string
		keys := keysArr[:0]
		for k := range d.Headers {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonw.AppendString(b, k)
			b = append(b, ':')
			b = jsonw.AppendString(b, d.Headers[k])
		}
		b = append(b, '}')
	}
	if d.Revision != "" {
		b = append(b, `,"revision":`...)
		b = jsonw.AppendString(b, d.Revision)
	}
	if len(d.Explanation) > 0 {
		// Off the hot path: only a decision that asked for it has one.
		if steps, err := json.Marshal(d.Explanation); err == nil {
			b = append(b, `,"explanation":`...)
			b = append(b, steps...)
		}
	}
	return append(b, '}')
}

// MarshalJSON encodes d with AppendJSON, headers included (on allow).
func (d Decision) MarshalJSON() ([]byte, error) { return d.AppendJSON(nil, true), nil }
