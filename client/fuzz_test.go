package client

import "testing"

// FuzzReadDecision: whatever a 200's body holds, readDecision does not
// panic, and what it accepts has an ID, reasons, and no headers on a deny.
func FuzzReadDecision(f *testing.F) {
	for _, s := range []string{
		`{"decision_id":"X","allow":true,"reasons":[],"headers":{"X-User":"a"}}`,
		`{"decision_id":"X","allow":false,"reasons":["no"],"revision":"r1"}`,
		`{"decision_id":"X","allow":false,"allow":true}`,
		`{"decision_id":"X","Allow":true}`,
		`{"decision_id":"X","allow":true}{}`,
		`{"decision_id":"X","allow":true,"explanation":{"rules":[]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := readDecision(raw)
		if err != nil {
			if d.Allow {
				t.Fatalf("error %v with an allow", err)
			}
			return
		}
		if d.ID == "" || d.Reasons == nil || !d.Allow && d.Headers != nil {
			t.Fatalf("accepted %q as %+v", raw, d)
		}
	})
}
