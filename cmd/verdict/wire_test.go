package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/server/config"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// wireTokens parses yaml as dir/verdict.yaml (so that relative paths
// resolve in dir) and builds its token options, failing the test on error.
func wireTokens(t *testing.T, dir, yaml string) (*config.Config, token.Options, []*jwks.Manager) {
	t.Helper()
	c, err := config.Parse([]byte(yaml), filepath.Join(dir, "verdict.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	opts, managers, err := tokenOptions(c, nil, filewatch.New(filewatch.Options{}), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, opts, managers
}

func TestTokenOptionsLoadsEveryKeySource(t *testing.T) {
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "keys", "es.pem"), string(authztest.NewIssuer(t, "ES256").PublicKeyPEM(t)))
	authztest.WriteFile(t, filepath.Join(dir, "keys", "jwks.json"), `{"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "e1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)
	authztest.WriteFile(t, filepath.Join(dir, "keys", "hmac"), strings.Repeat("s", 32)+"\n")
	t.Setenv("VERDICT_TEST_HMAC", strings.Repeat("e", 32)+"\n") // as a mounted secret often ends
	data := `tokens:
  leeway: 10s
  issuers:
    - {issuer: https://pem, audiences: [a], algorithms: [ES256], public_key_file: keys/es.pem}
    - {issuer: https://jwks, audiences: [a], algorithms: [EdDSA], jwks_file: keys/jwks.json}
    - {issuer: https://file, audiences: [a], algorithms: [HS256], hmac_secret_file: keys/hmac}
    - {issuer: https://env, audiences: [a], algorithms: [HS256], hmac_secret_env: VERDICT_TEST_HMAC}
`
	c, opts, managers := wireTokens(t, dir, data)
	if len(managers) != 0 {
		t.Errorf("managers for file keys: %v", managers)
	}
	if len(opts.Issuers) != 4 || opts.Leeway != 10*time.Second {
		t.Fatalf("options %+v", opts)
	}
	for _, is := range opts.Issuers {
		keys, err := is.Keys.Lookup(t.Context(), "")
		if err != nil || len(keys) != 1 {
			t.Errorf("%s: keys %v, %v", is.Issuer, keys, err)
		}
	}
	hmac, _ := opts.Issuers[2].Keys.Lookup(t.Context(), "")
	if string(hmac[0].Public.([]byte)) != strings.Repeat("s", 32) {
		t.Error("hmac_secret_file: trailing newline kept or secret wrong")
	}
	hmac, _ = opts.Issuers[3].Keys.Lookup(t.Context(), "")
	if string(hmac[0].Public.([]byte)) != strings.Repeat("e", 32) {
		t.Error("hmac_secret_env: trailing newline kept or secret wrong")
	}

	t.Setenv("VERDICT_TEST_HMAC", "")
	if _, _, err := tokenOptions(c, nil, filewatch.New(filewatch.Options{}), nil); err == nil || !strings.Contains(err.Error(), "tokens.issuers[3]") {
		t.Errorf("unset env secret: %v, want an error naming tokens.issuers[3]", err)
	}
	// A key set without keys is the configuration's error, with its key.
	authztest.WriteFile(t, filepath.Join(dir, "keys", "jwks.json"), `{"keys": []}`)
	t.Setenv("VERDICT_TEST_HMAC", strings.Repeat("e", 32))
	if _, _, err := tokenOptions(c, nil, filewatch.New(filewatch.Options{}), nil); !errors.Is(err, config.ErrInvalid) || !strings.Contains(err.Error(), "tokens.issuers[1]") ||
		!strings.Contains(err.Error(), "holds no keys") {
		t.Errorf("empty key set: %v, want a configuration error naming tokens.issuers[1]", err)
	}
}

func TestTokenOptionsRemoteIssuers(t *testing.T) {
	dir := t.TempDir()
	data := `tokens:
  jwks_persist_dir: state
  issuers:
    - {issuer: https://url, audiences: [a], algorithms: [RS256], jwks_url: https://url/keys, min_refresh: 2m, max_refresh: 2h, max_stale: 48h}
    - {issuer: https://oidc, audiences: [a], algorithms: [RS256], discovery: true}
`
	_, opts, managers := wireTokens(t, dir, data)
	if len(managers) != 2 || opts.Issuers[0].Keys != token.KeySet(managers[0]) || managers[1].Issuer() != "https://oidc" {
		t.Fatalf("managers %v for issuers %+v", managers, opts.Issuers)
	}
	if err := managers[0].Ready(); err == nil {
		t.Error("a manager that never ran is ready")
	}

	bad := "tokens:\n  issuers:\n    - {issuer: https://x, audiences: [a], algorithms: [RS256], jwks_file: k, max_stale: 1h}\n"
	if _, err := config.Parse([]byte(bad), "v.yaml"); err == nil || !strings.Contains(err.Error(), "apply only to jwks_url and discovery") {
		t.Errorf("max_stale on a jwks_file issuer: %v", err)
	}
}

// TestBundleHeaders: policy.bundle_headers reach the bundle server on every
// poll — a string from the environment, a file read anew each time (a
// rotated credential is used from the next poll) — and a request the
// server refuses is a failed poll whose error holds no credential.
func TestBundleHeaders(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key.txt")
	authztest.WriteFile(t, keyFile, "k1\n")
	t.Setenv("BUNDLE_TOKEN", "t0ken")

	bundlePath := filepath.Join(dir, "authz.tar.gz")
	writeBundle(t, bundlePath, map[string]string{"/authz/p.rego": "package authz\n\nallow := true\n"})
	bundle, err := os.ReadFile(bundlePath)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+" "+r.Header.Get("X-Api-Key"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer t0ken" || r.Header.Get("X-Api-Key") != "k1" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write(bundle)
	}))
	defer srv.Close()

	c, err := config.Parse([]byte(`policy:
  bundle_url: `+srv.URL+`/authz.tar.gz
  poll_interval: 50ms
  persist_dir: "off"
  bundle_headers:
    Authorization: Bearer ${BUNDLE_TOKEN}
    X-Api-Key: {file: key.txt}
`), filepath.Join(dir, "verdict.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	src, ok, err := policySource(c, "", nil, nil, nil)
	if err != nil || !ok {
		t.Fatalf("policySource: %v %v", ok, err)
	}
	loaded := make(chan string, 100)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- src.Run(ctx, bundles.SinkFunc(func(_ context.Context, s *bundles.Snapshot) error {
			loaded <- s.Revision
			return nil
		}))
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-loaded:
	case <-time.After(10 * time.Second):
		t.Fatalf("no bundle loaded; the server saw %q", seen)
	}

	authztest.WriteFile(t, keyFile, "k2\n") // rotated: the server no longer accepts it
	deadline := time.Now().Add(10 * time.Second)
	for src.Status().LastError == "" {
		if time.Now().After(deadline) {
			t.Fatal("the rotated key was never sent")
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	last := seen[len(seen)-1]
	mu.Unlock()
	if last != "Bearer t0ken k2" {
		t.Errorf("after rotation the server saw %q", last)
	}
	if msg := src.Status().LastError; strings.Contains(msg, "t0ken") || strings.Contains(msg, "k2") {
		t.Errorf("the poll error repeats a credential: %s", msg)
	}
}

// TestBundleVerificationNeverSilentlyOff: each of these configurations
// looks like it requires signed bundles; an unsigned bundle saying allow
// was decided with allow. Each is now an error (exit 2), and the unsigned
// bundle is never read. So are keys that could never verify a bundle, and
// a private key (the signing key, on every replica).
func TestBundleVerificationNeverSilentlyOff(t *testing.T) {
	dir := t.TempDir()
	writeBundle(t, filepath.Join(dir, "b.tar.gz"), map[string]string{
		"/.manifest": `{"revision": "evil"}`, "/authz/authz.rego": "package authz\n\ndefault allow := true\n"})
	issuer := authztest.NewIssuer(t, "ES256")
	authztest.WriteFile(t, filepath.Join(dir, "empty.pem"), "")
	authztest.WriteFile(t, filepath.Join(dir, "blank.pem"), " \n")
	authztest.WriteFile(t, filepath.Join(dir, "pub.pem"), string(issuer.PublicKeyPEM(t)))
	authztest.WriteFile(t, filepath.Join(dir, "short.key"), "x")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, filepath.Join(dir, "private.pem"),
		string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)})))
	for _, tc := range []struct{ policy, want string }{
		{"verification_key_file: private.pem", "is a private key"},
		{"verification_key_file: pub.pem", "cannot verify RS256"},
		{"verification_key_file: empty.pem", "empty.pem is empty"},
		{"verification_key_file: blank.pem", "blank.pem is empty"},
		{"verification_key_file: pub.pem\n  verification_algorithm: HS256", "a public key is no shared secret"},
		{"verification_key_file: short.key\n  verification_algorithm: HS256", "has 1 bytes, want at least 32"},
	} {
		cfg := filepath.Join(dir, "verdict.yaml")
		authztest.WriteFile(t, cfg, "policy:\n  bundle_file: b.tar.gz\n  "+tc.policy+"\n")
		code, out, stderr := verdict(t, "decide", "--config", cfg, "--action", "admin:delete")
		if code != 2 || !strings.Contains(stderr, tc.want) || strings.Contains(out, `"allow": true`) {
			t.Errorf("%s: exit %d, want 2 and %q\n%s\n%s", tc.policy, code, tc.want, out, stderr)
		}
	}

	// serve with a key and a directory to watch: a directory carries no
	// signature.
	cfg := filepath.Join(dir, "verdict.yaml")
	authztest.WriteFile(t, cfg, "policy:\n  bundle_file: b.tar.gz\n  verification_key_file: private.pem\n")
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	verify := bundles.Verification(func() (bundles.VerifyOptions, error) { return bundles.VerifyOptions{}, nil })
	policies := filepath.Join(dir, "policies")
	authztest.WriteFile(t, filepath.Join(policies, "authz.rego"), "package authz\n\ndefault allow := true\n")
	if _, _, err := policySource(c, policies, verify, nil, nil); err == nil || !strings.Contains(err.Error(), "a directory carries no signature") {
		t.Errorf("serve --policies DIR with a verification key: %v, want refused", err)
	}
}

// TestDecisionLogHashKey: decision_log.hash_key_file and hash_key_env key
// the hashes of decision_log.hash (HMAC-SHA256, the same for both ways of
// giving one key, a trailing line break not part of it); a missing, empty
// or short key, or a key without hash fields, is an error before anything
// is logged.
func TestDecisionLogHashKey(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("k", 32)
	authztest.WriteFile(t, filepath.Join(dir, "hash.key"), key+"\n")
	authztest.WriteFile(t, filepath.Join(dir, "empty.key"), "\n")
	t.Setenv("VERDICT_TEST_HASH_KEY", key+"\n")
	t.Setenv("VERDICT_TEST_SHORT_KEY", "short")
	t.Setenv("VERDICT_TEST_EMPTY_KEY", "")
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(`"alice"`))
	want := "hmac-sha256:" + hex.EncodeToString(mac.Sum(nil))

	logged := func(t *testing.T, dl string) (string, error) {
		t.Helper()
		c, err := config.Parse([]byte("decision_log:\n"+dl), filepath.Join(dir, "verdict.yaml"))
		if err != nil {
			return "", err
		}
		var out authztest.SyncBuffer
		l, logFile, err := decisionLog(c, &out, filewatch.New(filewatch.Options{}), slog.New(slog.DiscardHandler), time.Now)
		if err != nil {
			return "", err
		}
		defer logFile.Close()
		l.Log(decisionlog.Record{DecisionID: "D1", Time: time.Unix(0, 0), Reasons: []string{}, SubjectID: "alice"})
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		_ = l.Run(ctx)
		return out.String(), nil
	}
	for _, tc := range []struct{ name, dl, wantErr string }{
		{name: "file", dl: "  hash: [/input/subject/id]\n  hash_key_file: hash.key\n"},
		{name: "env", dl: "  hash: [/input/subject/id]\n  hash_key_env: VERDICT_TEST_HASH_KEY\n"},
		{name: "both", dl: "  hash: [/input/subject/id]\n  hash_key_file: hash.key\n  hash_key_env: VERDICT_TEST_HASH_KEY\n", wantErr: "not both"},
		{name: "no fields", dl: "  hash_key_env: VERDICT_TEST_HASH_KEY\n", wantErr: "without hash fields"},
		{name: "missing file", dl: "  hash: [/input/subject/id]\n  hash_key_file: nowhere.key\n", wantErr: "decision_log.hash_key_file"},
		{name: "empty file", dl: "  hash: [/input/subject/id]\n  hash_key_file: empty.key\n", wantErr: "empty.key is empty"},
		{name: "unset env", dl: "  hash: [/input/subject/id]\n  hash_key_env: VERDICT_TEST_NO_SUCH_KEY\n", wantErr: "is not set"},
		{name: "empty env", dl: "  hash: [/input/subject/id]\n  hash_key_env: VERDICT_TEST_EMPTY_KEY\n", wantErr: "is empty"},
		{name: "short", dl: "  hash: [/input/subject/id]\n  hash_key_env: VERDICT_TEST_SHORT_KEY\n", wantErr: "at least 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := logged(t, tc.dl)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Errorf("error %v, want one saying %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !strings.Contains(out, `"subject_id":"`+want+`"`) {
				t.Errorf("record %q (%v), want subject_id %s", out, err, want)
			}
		})
	}
}

// TestKeyForgetter: a key's removal reaches the engine once it is
// attached (its cached verifications are dropped); before that, removals
// have nothing to forget and are ignored.
func TestKeyForgetter(t *testing.T) {
	is := authztest.NewIssuer(t, "ES256")
	e, err := authz.New(authz.Options{Tokens: token.Options{Issuers: []token.Issuer{is.Config()}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Load(t.Context(), authztest.Policy(t, "p", "package authz\n\nallow := true\n")); err != nil {
		t.Fatal(err)
	}
	var k keyForgetter
	k.forget(is.Name, []string{is.KeyID}) // before attach: ignored
	if _, err := e.Decide(t.Context(), authz.Request{Token: token.Raw(is.Mint(t, nil)), Action: authz.Action{Name: "read"}}); err != nil {
		t.Fatal(err)
	}
	if n := e.Status().Caches.Token.Entries; n != 1 {
		t.Fatalf("token cache holds %d entries, want the verified token", n)
	}
	k.attach(e)
	k.forget(is.Name, []string{"another-key"})
	if n := e.Status().Caches.Token.Entries; n != 1 {
		t.Errorf("another key's removal dropped the token: %d entries", n)
	}
	k.forget(is.Name, []string{is.KeyID})
	if n := e.Status().Caches.Token.Entries; n != 0 {
		t.Errorf("after the key's removal the token cache holds %d entries, want none", n)
	}
}

// TestDecisionLogQueueBounds: decision_log.max_queue_records,
// max_queue_bytes and max_records_per_second reach the log: records past
// either bound, waiting for a writer that has not started, are dropped as
// buffer_full, and those past the rate as rate_limited.
func TestDecisionLogQueueBounds(t *testing.T) {
	big := decisionlog.Record{DecisionID: "D", Time: time.Unix(0, 0), Reasons: []string{strings.Repeat("r", 100<<10)}}
	small := decisionlog.Record{DecisionID: "D", Time: time.Unix(0, 0), Reasons: []string{}}
	for _, tc := range []struct {
		dl      string
		rec     decisionlog.Record
		n, kept int
	}{
		{"  max_queue_records: 3\n", small, 5, 3},
		{"  max_queue_bytes: 1MiB\n", big, 20, 10},
		{"  output: stdout\n", big, 20, 20}, // the defaults hold more
		{"  max_records_per_second: 4\n", small, 20, 4},
	} {
		c, err := config.Parse([]byte("decision_log:\n"+tc.dl), "verdict.yaml")
		if err != nil {
			t.Fatal(err)
		}
		l, logFile, err := decisionLog(c, io.Discard, filewatch.New(filewatch.Options{}), slog.New(slog.DiscardHandler), time.Now)
		if err != nil {
			t.Fatal(err)
		}
		kept := 0
		for range tc.n {
			if l.Log(tc.rec) {
				kept++
			}
		}
		logFile.Close()
		if dropped := l.Dropped(); kept != tc.kept || dropped != uint64(tc.n-tc.kept) {
			t.Errorf("%q: kept %d of %d (dropped %d), want %d", tc.dl, kept, tc.n, dropped, tc.kept)
		}
	}
}

// TestShadowOptions: policy.shadow's sample, queue and max_queue_bytes
// reach the shadow's options.
func TestShadowOptions(t *testing.T) {
	c, err := config.Parse([]byte("policy:\n  dir: p\n  shadow:\n    dir: q\n    sample: 0.5\n    queue: 8\n    max_queue_bytes: 2MiB\n"), "verdict.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if o := shadowOptions(c.Policy.Shadow); o.Sample != 0.5 || o.Queue != 8 || o.MaxQueueBytes != 2<<20 {
		t.Errorf("options %+v", o)
	}
}

// TestEvalHeapLimit: limits.eval_heap_limit when set, else half the soft
// memory limit when there is one, else none.
func TestEvalHeapLimit(t *testing.T) {
	for _, tc := range []struct {
		configured config.ByteSize
		memory     int64
		want       int64
	}{
		{0, math.MaxInt64, 0},
		{0, 400 << 20, 200 << 20},
		{64 << 20, 400 << 20, 64 << 20},
		{64 << 20, math.MaxInt64, 64 << 20},
	} {
		if got := evalHeapLimit(tc.configured, tc.memory); got != tc.want {
			t.Errorf("evalHeapLimit(%d, %d) = %d, want %d", tc.configured, tc.memory, got, tc.want)
		}
	}
}
