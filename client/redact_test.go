package client_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/client"
)

// TestRequestNeverShowsItsTokens: a Request (or its Caller) printed with any
// fmt verb, logged with slog or marshalled to JSON shows its tokens
// redacted, never the tokens; what else it holds still shows.
func TestRequestNeverShowsItsTokens(t *testing.T) {
	const subject, service = "eyJhbGciOiJFUzI1NiJ9.c3ViamVjdA.c2ln", "eyJhbGciOiJFUzI1NiJ9.c2VydmljZQ.c2ln"
	req := client.Request{Token: subject, Caller: client.Caller{Token: service},
		Action: client.Action{Name: "orders:read"}, Resource: map[string]any{"owner": "alice"}}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("decide", "request", req, "caller", req.Caller, "ptr", &req)
	slog.New(slog.NewTextHandler(&logged, nil)).Info("decide", "request", req, "caller", req.Caller)
	marshalled, err := json.Marshal(map[string]any{"request": req, "caller": req.Caller})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{
		fmt.Sprintf("%v %+v %#v %s %q %x", req, req, req, req, req, req),
		fmt.Sprintf("%v %+v %#v", &req, req.Caller, &req.Caller),
		fmt.Sprint(req.Caller), logged.String(), string(marshalled),
	} {
		if strings.Contains(out, "c3ViamVjdA") || strings.Contains(out, "c2VydmljZQ") {
			t.Errorf("a token shows in %s", out)
		}
		if !strings.Contains(out, "redacted jwt") && !strings.Contains(out, fmt.Sprintf("%x", "[redacted jwt")) {
			t.Errorf("no redacted token in %s", out)
		}
	}
	if got := fmt.Sprintf("%+v", req); !strings.Contains(got, "orders:read") || !strings.Contains(got, "alice") {
		t.Errorf("%%+v = %s; want the action and resource shown", got)
	}
}
