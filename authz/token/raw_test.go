package token_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
)

func TestRawRedacts(t *testing.T) {
	tok := authztest.NewIssuer(t, "HS256").Mint(t, nil)
	r := token.Raw(tok)
	want := r.String()
	if !strings.HasPrefix(want, "[redacted jwt sha256:") || len(want) != len("[redacted jwt sha256:12345678]") {
		t.Fatalf("String() = %q", want)
	}

	var logBuf bytes.Buffer
	slog.New(slog.NewJSONHandler(&logBuf, nil)).Info("request", "token", r)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("request", slog.Any("token", r))
	js, err := json.Marshal(struct{ Token token.Raw }{r})
	if err != nil {
		t.Fatal(err)
	}
	outputs := map[string]string{
		"%s": fmt.Sprintf("%s", r), "%v": fmt.Sprintf("%v", r), "%+v": fmt.Sprintf("%+v", r),
		"%#v": fmt.Sprintf("%#v", r), "%q": fmt.Sprintf("%q", r), "%x": fmt.Sprintf("%x", r),
		"%d": fmt.Sprintf("%d", r), "struct %+v": fmt.Sprintf("%+v", struct{ T token.Raw }{r}),
		"slog": logBuf.String(), "json": string(js),
	}
	for name, out := range outputs {
		if strings.Contains(out, tok) || strings.Contains(out, tok[:20]) {
			t.Errorf("%s leaks the token: %s", name, out)
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s = %s, want it to contain %s", name, out, want)
		}
	}

	if got := token.Raw(tok + "x").String(); got == want {
		t.Errorf("different tokens share the fingerprint %s", got)
	}
	if got := token.Raw("").String(); got != "[empty jwt]" {
		t.Errorf("empty Raw = %q", got)
	}
	var back struct{ Token token.Raw }
	if err := json.Unmarshal([]byte(`{"Token":"abc"}`), &back); err != nil || string(back.Token) != "abc" {
		t.Errorf("decoding into Raw: %q, %v", back.Token, err)
	}
}
