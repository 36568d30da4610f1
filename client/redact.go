package client

import (
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/verdict-pdp/verdict/internal/printable"
)

// A Request or Caller printed with any fmt verb, logged with slog or
// marshalled to JSON shows its tokens redacted ("[redacted jwt
// sha256:1a2b3c4d]", as authz.Request does), never the tokens: a service
// logging the question it asks leaks no credential. Decide sends the tokens
// themselves.
var (
	_ fmt.Formatter  = Request{}
	_ slog.LogValuer = Request{}
	_ json.Marshaler = Request{}
	_ fmt.Formatter  = Caller{}
	_ slog.LogValuer = Caller{}
	_ json.Marshaler = Caller{}
)

// plainRequest and plainCaller are Request and Caller without their
// printing methods, to print a redacted copy with.
type (
	plainRequest Request
	plainCaller  Caller
)

// redacted returns r with its token redacted. Its Caller prints (and
// marshals) itself redacted.
func (r Request) redacted() plainRequest {
	p := plainRequest(r)
	p.Token = printable.Token(r.Token)
	return p
}

// redacted returns c with its token redacted.
func (c Caller) redacted() plainCaller {
	p := plainCaller(c)
	p.Token = printable.Token(c.Token)
	return p
}

// Format implements fmt.Formatter: every verb prints r with its tokens
// redacted.
func (r Request) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), r.redacted())
}

// LogValue implements slog.LogValuer with r's tokens redacted.
func (r Request) LogValue() slog.Value { return slog.AnyValue(r.redacted()) }

// MarshalJSON marshals r with its tokens redacted (Decide writes its own
// body, with the tokens).
func (r Request) MarshalJSON() ([]byte, error) { return json.Marshal(r.redacted()) }

// Format implements fmt.Formatter: every verb prints c with its token
// redacted.
func (c Caller) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, fmt.FormatString(f, verb), c.redacted())
}

// LogValue implements slog.LogValuer with c's token redacted.
func (c Caller) LogValue() slog.Value { return slog.AnyValue(c.redacted()) }

// MarshalJSON marshals c with its token redacted.
func (c Caller) MarshalJSON() ([]byte, error) { return json.Marshal(c.redacted()) }
