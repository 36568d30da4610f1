package decisionlog_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// logOne writes r through a Logger with opts and returns the record as JSON.
func logOne(t *testing.T, opts decisionlog.Options, r decisionlog.Record) map[string]any {
	t.Helper()
	var out authztest.SyncBuffer
	opts.Writer = &out
	l, err := decisionlog.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l.Log(r)
	ctx, cancel := contextDone()
	defer cancel()
	if err := l.Run(ctx); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace([]byte(out.String())), &m); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	return m
}

func inputDoc(t *testing.T) ast.Value {
	t.Helper()
	v, err := ast.InterfaceToValue(map[string]any{
		"subject": map[string]any{"authenticated": true, "id": "alice",
			"claims": map[string]any{"email": "alice@example.com", "roles": []any{"viewer"}, "tenant": "acme"}},
		"caller":   map[string]any{"authenticated": false, "method": "none"},
		"action":   map[string]any{"name": "orders:read"},
		"resource": map[string]any{"owners": []any{"alice", "bob"}},
		"context":  map[string]any{"time": "2026-12-01T10:00:00Z", "request_id": "r1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestInputIsLoggedMaskedAndBounded: the input document is in the record,
// with masked fields gone, hashed fields replaced by their hash, and a
// record too large for the limit written without its input, counted.
func TestInputIsLoggedMaskedAndBounded(t *testing.T) {
	rec := decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{"ok"}, Allow: true, Input: inputDoc(t)}

	m := logOne(t, decisionlog.Options{}, rec)
	claims := m["input"].(map[string]any)["subject"].(map[string]any)["claims"].(map[string]any)
	if claims["email"] != "alice@example.com" || claims["tenant"] != "acme" {
		t.Errorf("unmasked input: %v", m["input"])
	}

	m = logOne(t, decisionlog.Options{Mask: []string{"/input/subject/claims/email", "/input/resource/owners/1", "/input/nowhere/x"},
		Hash: []string{"/input/subject/claims/tenant"}}, rec)
	in := m["input"].(map[string]any)
	claims = in["subject"].(map[string]any)["claims"].(map[string]any)
	if _, ok := claims["email"]; ok {
		t.Errorf("masked email logged: %v", claims)
	}
	if h, _ := claims["tenant"].(string); !strings.HasPrefix(h, "sha256:") || len(h) != len("sha256:")+64 {
		t.Errorf("hashed tenant = %v", claims["tenant"])
	}
	if owners := in["resource"].(map[string]any)["owners"].([]any); owners[0] != "alice" || owners[1] != nil {
		t.Errorf("masked array element: %v", owners)
	}
	if strings.Contains(logLine(t, decisionlog.Options{Mask: []string{"/input/subject/claims/email"}}, rec), "alice@example.com") {
		t.Error("the masked value appears in the record")
	}

	var out authztest.SyncBuffer
	l, err := decisionlog.New(decisionlog.Options{Writer: &out, MaxRecordBytes: 200})
	if err != nil {
		t.Fatal(err)
	}
	l.Log(rec)
	ctx, cancel := contextDone()
	defer cancel()
	_ = l.Run(ctx)
	if !strings.Contains(out.String(), `"input_truncated":true`) || strings.Contains(out.String(), `"input":`) || l.Truncated() != 1 {
		t.Errorf("over the limit: %s (truncated %d)", out.String(), l.Truncated())
	}
}

// TestMaskCoversTheRecordsOwnFields: the record repeats input fields at
// its top level (subject_id, caller_id, the action); a mask or hash of the
// input field, or of a document holding it, applies there too, so the
// masked value appears nowhere in the record.
func TestMaskCoversTheRecordsOwnFields(t *testing.T) {
	input, err := ast.InterfaceToValue(map[string]any{
		"subject": map[string]any{"id": "alice@example.com"},
		"caller":  map[string]any{"id": "spiffe://example/payments"},
		"action":  map[string]any{"name": "ssn:read", "method": "GET", "path": "/users/alice@example.com/ssn/123-45-6789"},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{}, Input: input,
		SubjectID: "alice@example.com", CallerID: "spiffe://example/payments",
		Action: decisionlog.Action{Name: "ssn:read", Method: "GET", Path: "/users/alice@example.com/ssn/123-45-6789"}}

	line := logLine(t, decisionlog.Options{Mask: []string{"/input/subject/id", "/input/action/path"}}, rec)
	for _, secret := range []string{"alice@example.com", "123-45-6789"} {
		if strings.Contains(line, secret) {
			t.Errorf("masked %s appears in the record: %s", secret, line)
		}
	}
	if !strings.Contains(line, `"caller_id":"spiffe://example/payments"`) || !strings.Contains(line, `"name":"ssn:read"`) {
		t.Errorf("fields not masked are gone: %s", line)
	}

	m := logOne(t, decisionlog.Options{Hash: []string{"/input/subject/id"}, Mask: []string{"/input/action"}}, rec)
	hashed := m["input"].(map[string]any)["subject"].(map[string]any)["id"]
	if h, _ := hashed.(string); !strings.HasPrefix(h, "sha256:") || m["subject_id"] != hashed {
		t.Errorf("subject_id %v, input's subject.id %v: want the same hash", m["subject_id"], hashed)
	}
	if a, _ := m["action"].(map[string]any); len(a) != 0 {
		t.Errorf("action %v under a mask of /input/action, want none of its fields", a)
	}
}

// TestKeyedHash: with a hash key, a hashed field is the HMAC-SHA256 of its
// JSON under the key: the same in the input and the record's own copy,
// stable across records, and not the plain SHA-256 that anyone can check a
// guess against; another key gives another hash.
func TestKeyedHash(t *testing.T) {
	input, err := ast.InterfaceToValue(map[string]any{"subject": map[string]any{"id": "alice@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	rec := decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{}, Input: input, SubjectID: "alice@example.com"}
	key := bytes.Repeat([]byte("k"), decisionlog.MinHashKeyBytes)
	hashOf := func(key []byte) (inInput, top any) {
		m := logOne(t, decisionlog.Options{Hash: []string{"/input/subject/id"}, HashKey: key}, rec)
		return m["input"].(map[string]any)["subject"].(map[string]any)["id"], m["subject_id"]
	}
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(`"alice@example.com"`))
	want := "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil))
	if in, top := hashOf(key); in != want || top != want {
		t.Errorf("keyed hash: input %v, subject_id %v; want %s for both", in, top, want)
	}
	if again, _ := hashOf(key); again != want {
		t.Errorf("same key, another record: %v, want %s", again, want)
	}
	other := bytes.Repeat([]byte("o"), decisionlog.MinHashKeyBytes)
	if in, _ := hashOf(other); in == want {
		t.Error("another key gave the same hash")
	}
	plain := sha256.Sum256([]byte(`"alice@example.com"`))
	if in, _ := hashOf(nil); in != "sha256:"+hex.EncodeToString(plain[:]) {
		t.Errorf("without a key: %v, want the plain SHA-256", in)
	}
	for name, opts := range map[string]decisionlog.Options{
		"short key":          {Hash: []string{"/input/subject/id"}, HashKey: key[:decisionlog.MinHashKeyBytes-1]},
		"key without fields": {Mask: []string{"/input/subject/id"}, HashKey: key},
	} {
		opts.Writer = &bytes.Buffer{}
		if _, err := decisionlog.New(opts); !errors.Is(err, decisionlog.ErrOptions) {
			t.Errorf("%s: New = %v, want ErrOptions", name, err)
		}
	}
}

func logLine(t *testing.T, opts decisionlog.Options, r decisionlog.Record) string {
	t.Helper()
	b, _ := json.Marshal(logOne(t, opts, r))
	return string(b)
}

func TestMaskPointersAreChecked(t *testing.T) {
	for _, bad := range []string{"/subject/claims/email", "/input/", "input/x", "/input/a~2b"} {
		if _, err := decisionlog.New(decisionlog.Options{Writer: &bytes.Buffer{}, Mask: []string{bad}}); err == nil {
			t.Errorf("mask %q accepted", bad)
		}
	}
	if _, err := decisionlog.New(decisionlog.Options{Writer: &bytes.Buffer{}, Hash: []string{"/input/a~1b/c~0d"}}); err != nil {
		t.Errorf("escaped pointer refused: %v", err)
	}
}

// contextDone is a context that is already done: Run writes what is
// queued, flushes and returns.
func contextDone() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx, func() {}
}

// TestMaskCoversTheIDsClaims: a mask or hash of a subject's or caller's
// id covers the claims the id is read from (sub; azp, client_id, sub),
// where the same value stood in the clear beside its hash.
func TestMaskCoversTheIDsClaims(t *testing.T) {
	input, err := ast.InterfaceToValue(map[string]any{
		"subject": map[string]any{"id": "alice@example.com", "claims": map[string]any{"sub": "alice@example.com", "tenant": "acme"}},
		"caller": map[string]any{"id": "payments-svc", "claims": map[string]any{"azp": "payments-svc", "client_id": "payments-svc",
			"sub": "payments-svc", "scope": "read"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{}, Input: input,
		SubjectID: "alice@example.com", CallerID: "payments-svc"}
	for _, opts := range []decisionlog.Options{
		{Hash: []string{"/input/subject/id", "/input/caller/id"}},
		{Mask: []string{"/input/subject/id", "/input/caller/id"}},
	} {
		line := logLine(t, opts, rec)
		for _, secret := range []string{"alice@example.com", "payments-svc"} {
			if strings.Contains(line, secret) {
				t.Errorf("%+v: %s appears in the record: %s", opts, secret, line)
			}
		}
		if !strings.Contains(line, `"tenant":"acme"`) || !strings.Contains(line, `"scope":"read"`) {
			t.Errorf("%+v: other claims are gone: %s", opts, line)
		}
	}
	// Named itself, a source is shaped as named, once: a hash of the id
	// and of the claim are the same hash (not a hash of a hash), and a
	// claim hashed beside a masked id stays hashed.
	m := logOne(t, decisionlog.Options{Hash: []string{"/input/subject/id", "/input/subject/claims/sub", "/input/subject/id"}}, rec)
	subject := m["input"].(map[string]any)["subject"].(map[string]any)
	if subject["id"] != subject["claims"].(map[string]any)["sub"] || m["subject_id"] != subject["id"] {
		t.Errorf("id %v, claims.sub %v, subject_id %v: want one hash", subject["id"], subject["claims"].(map[string]any)["sub"], m["subject_id"])
	}
	m = logOne(t, decisionlog.Options{Mask: []string{"/input/subject/id"}, Hash: []string{"/input/subject/claims/sub"}}, rec)
	if sub, _ := m["input"].(map[string]any)["subject"].(map[string]any)["claims"].(map[string]any)["sub"].(string); !strings.HasPrefix(sub, "sha256:") {
		t.Errorf("claims.sub %q, want it hashed as named", sub)
	}
	// A caller proved by its certificate: the id's sources are there.
	mtls, err := ast.InterfaceToValue(map[string]any{"caller": map[string]any{"id": "spiffe://acme/ns/x/sa/pay", "spiffe_id": "spiffe://acme/ns/x/sa/pay",
		"certificate": map[string]any{"uris": []any{"spiffe://acme/ns/x/sa/pay"}, "subject": "CN=pay", "issuer": "CN=acme-ca"}}})
	if err != nil {
		t.Fatal(err)
	}
	line := logLine(t, decisionlog.Options{Mask: []string{"/input/caller/id"}}, decisionlog.Record{DecisionID: "D2", Time: time.Unix(0, 0),
		Reasons: []string{}, Input: mtls, CallerID: "spiffe://acme/ns/x/sa/pay"})
	if strings.Contains(line, "sa/pay") || strings.Contains(line, "CN=pay") || !strings.Contains(line, "CN=acme-ca") {
		t.Errorf("a masked certificate caller's id stays in the record, or its issuer is gone: %s", line)
	}
}

// TestMaskCoversLinkedFields: a mask or hash of a field an id is read from
// covers the id (and subject_id, caller_id) too, and one of the action's
// path covers its segments, and the reverse: the same value stood in the
// clear beside its hash, or in place of the field masked.
func TestMaskCoversLinkedFields(t *testing.T) {
	input, err := ast.InterfaceToValue(map[string]any{
		"subject": map[string]any{"id": "alice-sub", "claims": map[string]any{"sub": "alice-sub", "tenant": "tenant-x"}},
		"caller": map[string]any{"id": "spiffe://acme/sa/pay", "spiffe_id": "spiffe://acme/sa/pay",
			"certificate": map[string]any{"uris": []any{"spiffe://acme/sa/pay"}, "issuer": "CN=acme-ca"}},
		"action": map[string]any{"method": "GET", "path": "/users/bob@example.com/records",
			"segments": []any{"users", "bob@example.com", "records"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{}, Input: input,
		SubjectID: "alice-sub", CallerID: "spiffe://acme/sa/pay",
		Action: decisionlog.Action{Method: "GET", Path: "/users/bob@example.com/records"}}
	for _, tc := range []struct {
		name   string
		fields []string
		gone   []string // values no longer in the record
		stay   []string // values still in it
	}{
		{"the subject's sub", []string{"/input/subject/claims/sub"}, []string{"alice-sub"}, []string{"tenant-x", "spiffe://acme/sa/pay"}},
		{"the subject's claims", []string{"/input/subject/claims"}, []string{"alice-sub", "tenant-x"}, []string{"spiffe://acme/sa/pay"}},
		{"the caller's SPIFFE ID", []string{"/input/caller/spiffe_id"}, []string{"acme/sa/pay"}, []string{"CN=acme-ca", "alice-sub"}},
		{"one of the caller's certificate's URIs", []string{"/input/caller/certificate/uris/0"}, []string{"acme/sa/pay"}, []string{"CN=acme-ca"}},
		{"the path", []string{"/input/action/path"}, []string{"bob@example.com"}, []string{`"GET"`, "alice-sub"}},
		{"a segment", []string{"/input/action/segments/1"}, []string{"bob@example.com"}, []string{`"users"`, `"records"`}},
	} {
		for _, shape := range []string{"mask", "hash"} {
			opts := decisionlog.Options{Mask: tc.fields}
			if shape == "hash" {
				opts = decisionlog.Options{Hash: tc.fields}
			}
			line := logLine(t, opts, rec)
			for _, v := range tc.gone {
				if strings.Contains(line, v) {
					t.Errorf("%s of %s: %q is still in the record: %s", shape, tc.name, v, line)
				}
			}
			for _, v := range tc.stay {
				if !strings.Contains(line, v) {
					t.Errorf("%s of %s: %q is gone too: %s", shape, tc.name, v, line)
				}
			}
		}
	}
	// Hashed, a sub and the id read from it are one hash.
	m := logOne(t, decisionlog.Options{Hash: []string{"/input/subject/claims/sub"}}, rec)
	subject := m["input"].(map[string]any)["subject"].(map[string]any)
	if h := subject["claims"].(map[string]any)["sub"]; h != subject["id"] || h != m["subject_id"] {
		t.Errorf("claims.sub %v, id %v, subject_id %v: want one hash", h, subject["id"], m["subject_id"])
	}
}
