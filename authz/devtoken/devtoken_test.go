package devtoken_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
)

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nested", "dev-key.pem")
	if _, err := devtoken.Load(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load of a missing key: %v, want fs.ErrNotExist", err)
	}
	m1, created, err := devtoken.LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate: created=%v err=%v", created, err)
	}
	info, err := os.Stat(path)
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v (%v), want 0600", info.Mode(), err)
	}
	m2, created, err := devtoken.LoadOrCreate(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreate: created=%v err=%v", created, err)
	}

	// A token from the first minter verifies with the reloaded key.
	v, err := token.NewVerifier(token.Options{Issuers: []token.Issuer{m2.TokenIssuer()}})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m1.Mint("alice", map[string]any{"roles": []string{"viewer"}}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.Verify(t.Context(), tok)
	if err != nil || got.Subject != "alice" || got.Issuer != devtoken.Issuer {
		t.Fatalf("Verify: %+v, %v", got, err)
	}

	// A fresh key is another identity.
	other, _ := devtoken.Generate()
	tok, _ = other.Mint("alice", nil, time.Hour, time.Now())
	if _, err := v.Verify(t.Context(), tok); !errors.Is(err, token.ErrUnknownKID) {
		t.Fatalf("token of another dev key: %v, want unknown_kid", err)
	}
}

func TestLoadRejectsGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.pem")
	if err := os.WriteFile(path, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devtoken.Load(path); err == nil {
		t.Fatal("garbage key loaded")
	}
	if _, _, err := devtoken.LoadOrCreate(path); err == nil {
		t.Fatal("LoadOrCreate replaced or accepted a garbage key file")
	}
}
