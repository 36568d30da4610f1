package token

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/verdict-pdp/verdict/internal/printable"
)

// Raw is a bearer token as received. Carry tokens in this type anywhere
// they might reach a log: every way of printing it (String, all fmt verbs
// including %#v, slog through LogValue, encoding/json and other text
// marshallers through MarshalText) yields a redacted form such as
// "[redacted jwt sha256:1a2b3c4d]", where the fingerprint is the first 8
// hex digits of the token's SHA-256, enough to correlate log lines without
// revealing the token. Use string(r) deliberately when the token itself is
// needed, as in Verifier.Verify(ctx, string(r)). The zero value is the empty
// token and prints as "[empty jwt]".
type Raw string

var (
	_ fmt.Stringer   = Raw("")
	_ fmt.Formatter  = Raw("")
	_ slog.LogValuer = Raw("")
)

// String returns the redacted form of r.
func (r Raw) String() string { return printable.Token(string(r)) }

// LogValue implements slog.LogValuer with the redacted form of r.
func (r Raw) LogValue() slog.Value { return slog.StringValue(r.String()) }

// Format implements fmt.Formatter so that every verb, including %x, %q
// and %#v, prints the redacted form of r and never the token.
func (r Raw) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		fmt.Fprintf(f, "%q", r.String())
		return
	}
	io.WriteString(f, r.String())
}

// MarshalText implements encoding.TextMarshaler with the redacted form of
// r, so a Raw inside a logged or marshalled struct does not leak. Decoding
// into a Raw is unaffected.
func (r Raw) MarshalText() ([]byte, error) { return []byte(r.String()), nil }
