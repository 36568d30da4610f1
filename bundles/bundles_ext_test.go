package bundles_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
)

func TestReadTarballVerification(t *testing.T) {
	key, other := bundletest.NewKey(t), bundletest.NewKey(t)
	mods := map[string]string{"authz/authz.rego": bundletest.Policy("authz", 1)}
	signed := bundletest.Tarball(t, mods, map[string]any{"roles": map[string]any{"a": 1}}, "rev-1", &key)
	unsigned := bundletest.Tarball(t, mods, nil, "rev-1", nil)
	wrong := bundletest.Tarball(t, mods, nil, "rev-1", &other)
	// Tampered: same signature, different module content.
	tampered := bundletest.Tarball(t, map[string]string{"authz/authz.rego": bundletest.Policy("authz", 2)}, nil, "rev-1", nil)
	tampered = spliceSignature(t, signed, tampered)
	extra := withFiles(t, signed, map[string][]byte{"extra.txt": []byte("not signed")})
	twoSigs := withFiles(t, signed, map[string][]byte{"sub/.signatures.json": tarFiles(t, signed)[".signatures.json"]})
	removed := withFiles(t, signed, map[string][]byte{"authz/authz.rego": nil})
	broken := signedBroken(t, key)

	verify := bundles.VerifyOptions{Key: key.Public}
	tests := []struct {
		name    string
		raw     []byte
		verify  bundles.VerifyOptions
		wantErr error
		notErr  error // must not be wrapped
	}{
		{name: "signed, verified", raw: signed, verify: verify},
		{name: "signed, no key configured", raw: signed},
		{name: "unsigned, no key configured", raw: unsigned},
		{name: "unsigned refused", raw: unsigned, verify: verify, wantErr: bundles.ErrSignature},
		{name: "wrong key refused", raw: wrong, verify: verify, wantErr: bundles.ErrSignature},
		{name: "tampered refused", raw: tampered, verify: verify, wantErr: bundles.ErrSignature},
		{name: "scope mismatch refused", raw: signed, verify: bundles.VerifyOptions{Key: key.Public, Scope: "prod"}, wantErr: bundles.ErrSignature},
		{name: "unsigned extra file refused", raw: extra, verify: verify, wantErr: bundles.ErrSignature},
		{name: "excluded extra file accepted", raw: extra, verify: bundles.VerifyOptions{Key: key.Public, Exclude: []string{"extra.*"}}},
		{name: "signed file removed refused", raw: removed, verify: verify, wantErr: bundles.ErrSignature},
		{name: "two signatures files refused", raw: twoSigs, verify: verify, wantErr: bundles.ErrSignature},
		{name: "signed but broken policy is no signature error", raw: broken, verify: verify, wantErr: bundles.ErrRead, notErr: bundles.ErrSignature},
		{name: "garbage", raw: []byte("not a tarball"), wantErr: bundles.ErrRead},
		{name: "garbage with key is no signature error", raw: []byte("not a tarball"), verify: verify, wantErr: bundles.ErrRead, notErr: bundles.ErrSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := bundles.ReadTarball(bytes.NewReader(tc.raw), bundles.TarballOptions{Origin: "test", Verify: tc.verify})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) || !errors.Is(err, bundles.ErrRead) {
					t.Fatalf("err = %v, want %v (and ErrRead)", err, tc.wantErr)
				}
				if tc.notErr != nil && errors.Is(err, tc.notErr) {
					t.Fatalf("err = %v, want no %v", err, tc.notErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Revision != "rev-1" || len(s.Modules) != 1 || s.Modules[0].Path != "authz/authz.rego" {
				t.Fatalf("snapshot = %+v", s)
			}
		})
	}
}

// spliceSignature returns bundle b with a's .signatures.json added.
func spliceSignature(t *testing.T, a, b []byte) []byte {
	t.Helper()
	sig := tarFiles(t, a)[".signatures.json"]
	if sig == nil {
		t.Fatal("no signature in signed bundle")
	}
	files := tarFiles(t, b)
	files[".signatures.json"] = sig
	return writeTar(t, files)
}

// withFiles returns bundle b with files added or replaced (nil removes one).
func withFiles(t *testing.T, b []byte, add map[string][]byte) []byte {
	t.Helper()
	files := tarFiles(t, b)
	for name, data := range add {
		if data == nil {
			delete(files, name)
			continue
		}
		files[name] = data
	}
	return writeTar(t, files)
}

// signedBroken returns a bundle correctly signed with key whose module does
// not parse.
func signedBroken(t *testing.T, key bundletest.Key) []byte {
	t.Helper()
	src := []byte("package authz\n\nallow if {\n")
	b := bundle.Bundle{Data: map[string]any{}, Modules: []bundle.ModuleFile{{URL: "/authz.rego", Path: "/authz.rego", Raw: src}}}
	b.Manifest.Init()
	bundletest.Must(t, b.GenerateSignature(bundle.NewSigningConfig(string(key.Private), "RS256", ""), bundles.DefaultKeyID, false))
	var buf bytes.Buffer
	bundletest.Must(t, bundle.NewWriter(&buf).DisableFormat(true).Write(b))
	return buf.Bytes()
}

func TestReadTarballDeltaRefused(t *testing.T) {
	raw := writeTar(t, map[string][]byte{
		"patch.json": []byte(`{"data": [{"op": "upsert", "path": "/x", "value": 1}]}`),
		".manifest":  []byte(`{"revision": "d1", "roots": [""]}`),
	})
	_, err := bundles.ReadTarballBytes(raw, bundles.TarballOptions{})
	if !errors.Is(err, bundles.ErrRead) || !strings.Contains(err.Error(), "delta") {
		t.Fatalf("err = %v, want ErrRead for a delta bundle", err)
	}
}

func TestReadTarballTooLarge(t *testing.T) {
	raw := bundletest.Tarball(t, map[string]string{"a.rego": bundletest.Policy("a", 1)}, nil, "", nil)
	_, err := bundles.ReadTarball(bytes.NewReader(raw), bundles.TarballOptions{MaxBytes: int64(len(raw) - 1)})
	if !errors.Is(err, bundles.ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
}

// TestVerifyOptionsValidate: keys that could never verify a bundle of the
// algorithm, and keys that must not be there at all (a private key, a
// public key as a shared secret, a short secret), are configuration
// errors, found before any bundle is read.
func TestVerifyOptionsValidate(t *testing.T) {
	rsaKey := bundletest.NewKey(t)
	other := bundletest.NewKey(t)
	ecPEM := func(curve elliptic.Curve) []byte {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	}
	p256, p384 := ecPEM(elliptic.P256()), ecPEM(elliptic.P384())
	ca := authztest.NewCA(t, "bundle signer")
	pkcs1, _ := pem.Decode(rsaKey.Public)
	pub, err := x509.ParsePKIXPublicKey(pkcs1.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	rsaPublicPKCS1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(pub.(*rsa.PublicKey))})
	join := func(parts ...[]byte) string { return string(bytes.Join(parts, []byte("\n"))) }
	for _, tc := range []struct {
		name, key, alg string
		ok             bool
	}{
		{"no key: no verification", "", "", true},
		{"RSA public key, RS256 by default", string(rsaKey.Public), "", true},
		{"RSA public key, PS512", string(rsaKey.Public), "PS512", true},
		{"RSA public key in PKCS #1", string(rsaPublicPKCS1), "RS256", true},
		{"two RSA keys (rotation)", join(rsaKey.Public, other.Public), "RS256", true},
		{"a certificate", string(ca.PEM()), "ES256", true},
		{"P-256 key, ES256", string(p256), "ES256", true},
		{"P-384 key, ES384", string(p384), "ES384", true},
		{"P-256 key, ES384", string(p256), "ES384", false},
		{"RSA key, ES256", string(rsaKey.Public), "ES256", false},
		{"P-256 key, RS256", string(p256), "RS256", false},
		{"a good key and a wrong one", join(rsaKey.Public, p256), "RS256", false},
		{"a private key", string(rsaKey.Private), "RS256", false},
		{"an RSA key of 1,024 bits", weakRSA(t), "RS256", false},
		{"a public key beside a private key", join(rsaKey.Public, rsaKey.Private), "RS256", false},
		{"a key, and another cut short", join(rsaKey.Public, other.Public[:len(other.Public)/2]), "RS256", false},
		{"not PEM", "not pem", "RS256", false},
		{"another PEM block", "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n", "RS256", false},
		{"alg none", "s3cret", "none", false},
		{"a public key as a shared secret", string(rsaKey.Public), "HS256", false},
		{"HS256, 1 byte", "x", "HS256", false},
		{"HS256, 31 bytes", strings.Repeat("k", 31), "HS256", false},
		{"HS256, 32 bytes", strings.Repeat("k", 32), "HS256", true},
		{"HS384, 47 bytes", strings.Repeat("k", 47), "HS384", false},
		{"HS512, 63 bytes", strings.Repeat("k", 63), "HS512", false},
		{"HS512, 64 bytes", strings.Repeat("k", 64), "HS512", true},
	} {
		err := bundles.VerifyOptions{Key: []byte(tc.key), Algorithm: tc.alg}.Validate()
		if (err == nil) != tc.ok || err != nil && !errors.Is(err, bundles.ErrConfig) {
			t.Errorf("%s: %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

// TestVerifyKeyRing: with several keys configured, a bundle signed with
// any of them is read, and one signed with none of them is refused; with
// one key, the old error is kept (no "of 1").
func TestVerifyKeyRing(t *testing.T) {
	old, next, stranger := bundletest.NewKey(t), bundletest.NewKey(t), bundletest.NewKey(t)
	mods := map[string]string{"authz/authz.rego": bundletest.Policy("authz", 1)}
	ring := bundles.VerifyOptions{Key: append(append([]byte(nil), old.Public...), next.Public...)}
	for _, tc := range []struct {
		name    string
		signer  bundletest.Key
		verify  bundles.VerifyOptions
		wantErr string
	}{
		{"signed with the old key", old, ring, ""},
		{"signed with the new key", next, ring, ""},
		{"signed with neither", stranger, ring, "no key of 2 verifies it"},
		{"one key, signed with another", stranger, bundles.VerifyOptions{Key: old.Public}, "failed to verify JWT signature"},
	} {
		raw := bundletest.Tarball(t, mods, nil, "rev-1", &tc.signer)
		_, err := bundles.ReadTarballBytes(raw, bundles.TarballOptions{Verify: tc.verify})
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.wantErr != "" && (!errors.Is(err, bundles.ErrSignature) || !strings.Contains(err.Error(), tc.wantErr) || strings.Contains(err.Error(), "of 1")):
			t.Errorf("%s: %v, want ErrSignature saying %q", tc.name, err, tc.wantErr)
		}
	}
}

// TestReadDirConfigMap lays out a directory the way the kubelet mounts a
// ConfigMap (files are symlinks into ..data, which links to a timestamped
// directory) and checks each module is read exactly once.
func TestReadDirConfigMap(t *testing.T) {
	dir := t.TempDir()
	ts := filepath.Join(dir, "..2024_01_01_00_00_00.000000001")
	bundletest.WriteFile(t, filepath.Join(ts, "authz.rego"), []byte(bundletest.Policy("authz", 1)))
	bundletest.WriteFile(t, filepath.Join(ts, "data.json"), []byte(`{"x": 1}`))
	bundletest.Must(t, os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data")))
	bundletest.Must(t, os.Symlink("..data/authz.rego", filepath.Join(dir, "authz.rego")))
	bundletest.Must(t, os.Symlink("..data/data.json", filepath.Join(dir, "data.json")))
	// A linked subdirectory, a dangling link and a link cycle.
	bundletest.WriteFile(t, filepath.Join(t.TempDir(), "x"), nil)
	shared := t.TempDir()
	bundletest.WriteFile(t, filepath.Join(shared, "lib.rego"), []byte(bundletest.Policy("lib", 1)))
	bundletest.Must(t, os.Symlink(shared, filepath.Join(dir, "lib")))
	bundletest.Must(t, os.Symlink("nowhere.rego", filepath.Join(dir, "dangling.rego")))
	bundletest.Must(t, os.Symlink(".", filepath.Join(dir, "loop")))

	s, err := bundles.ReadDir(dir, bundles.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(bundletest.ModulePaths(s), ",")
	if want := "authz.rego,lib/lib.rego"; got != want {
		t.Errorf("modules = %s, want %s", got, want)
	}
	if s.Data["x"] == nil {
		t.Errorf("data = %v, want x", s.Data)
	}
	if !strings.HasPrefix(s.Revision, "sha256:") {
		t.Errorf("revision = %q, want a content hash", s.Revision)
	}
}

// TestReadDirNoLinksOut: with NoLinksOut, a link that leads out of the
// directory (to a file, such as a credential, or to a directory) is
// refused, naming the link and not showing the target's content; links
// that stay inside, as a ConfigMap's do, are followed as always.
func TestReadDirNoLinksOut(t *testing.T) {
	outside := t.TempDir()
	secret := filepath.Join(outside, "credentials")
	bundletest.WriteFile(t, secret, []byte("token=s3cr3t\n"))
	bundletest.WriteFile(t, filepath.Join(outside, "lib", "lib.rego"), []byte(bundletest.Policy("lib", 1)))

	inside := t.TempDir()
	ts := filepath.Join(inside, "..2024_01_01_00_00_00.000000001")
	bundletest.WriteFile(t, filepath.Join(ts, "authz.rego"), []byte(bundletest.Policy("authz", 1)))
	bundletest.Must(t, os.Symlink(filepath.Base(ts), filepath.Join(inside, "..data")))
	bundletest.Must(t, os.Symlink("..data/authz.rego", filepath.Join(inside, "authz.rego")))
	bundletest.Must(t, os.Symlink("..data", filepath.Join(inside, "again")))
	if s, err := bundles.ReadDir(inside, bundles.ReadOptions{NoLinksOut: true}); err != nil || len(s.Modules) != 2 {
		t.Fatalf("links inside the directory: %v, %v", s, err)
	}

	for name, target := range map[string]string{
		"a file":         secret,
		"a directory":    filepath.Join(outside, "lib"),
		"a relative one": "",
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			bundletest.WriteFile(t, filepath.Join(dir, "authz.rego"), []byte(bundletest.Policy("authz", 1)))
			link := filepath.Join(dir, "sub", "leak.rego")
			bundletest.Must(t, os.MkdirAll(filepath.Dir(link), 0o755))
			if target == "" { // the secret, written relative to the link
				rel, err := filepath.Rel(filepath.Dir(link), secret)
				bundletest.Must(t, err)
				target = rel
			}
			bundletest.Must(t, os.Symlink(target, link))
			_, err := bundles.ReadDir(dir, bundles.ReadOptions{NoLinksOut: true})
			if !errors.Is(err, bundles.ErrLinkOut) || !errors.Is(err, bundles.ErrRead) || !strings.Contains(err.Error(), "sub/leak.rego") {
				t.Errorf("ReadDir = %v, want ErrLinkOut naming sub/leak.rego", err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows the target's content: %v", err)
			}
			if _, err := bundles.ReadDir(dir, bundles.ReadOptions{}); errors.Is(err, bundles.ErrLinkOut) {
				t.Errorf("without NoLinksOut: %v, want the link followed", err)
			}
		})
	}
}

// TestReadDirLinksBetweenDirectories: links that make the directory tree a
// graph (siblings linking to each other; every level linking four times to
// the next) are read once each, where following every link never ended
// (the first) or took time exponential in the depth (the second).
func TestReadDirLinksBetweenDirectories(t *testing.T) {
	siblings := t.TempDir()
	bundletest.WriteFile(t, filepath.Join(siblings, "a", "x.rego"), []byte(bundletest.Policy("a", 1)))
	bundletest.WriteFile(t, filepath.Join(siblings, "b", "y.rego"), []byte(bundletest.Policy("b", 1)))
	for _, l := range []string{"l1", "l2"} {
		bundletest.Must(t, os.Symlink("../b", filepath.Join(siblings, "a", l)))
		bundletest.Must(t, os.Symlink("../a", filepath.Join(siblings, "b", l)))
	}
	chain := t.TempDir()
	const depth = 16
	for i := range depth {
		bundletest.WriteFile(t, filepath.Join(chain, fmt.Sprintf("l%d", i), "p.rego"), []byte(bundletest.Policy(fmt.Sprintf("l%d", i), 1)))
		if i+1 < depth {
			for j := range 4 {
				bundletest.Must(t, os.Symlink(fmt.Sprintf("../l%d", i+1), filepath.Join(chain, fmt.Sprintf("l%d", i), fmt.Sprintf("n%d", j))))
			}
		}
	}
	for _, tc := range []struct {
		dir      string
		atMost   int
		mustHave []string
	}{
		{siblings, 3, []string{"a/x.rego", "b/y.rego"}},
		{chain, 2 * depth, []string{"l0/p.rego", fmt.Sprintf("l%d/p.rego", depth-1)}},
	} {
		done := make(chan struct{})
		var s *bundles.Snapshot
		var err error
		go func() {
			defer close(done)
			s, err = bundles.ReadDir(tc.dir, bundles.ReadOptions{})
		}()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("ReadDir(%s) did not return", tc.dir)
		}
		if err != nil {
			t.Fatal(err)
		}
		paths := bundletest.ModulePaths(s)
		if len(paths) > tc.atMost {
			t.Errorf("%d modules read, want at most %d: %v", len(paths), tc.atMost, paths)
		}
		for _, p := range tc.mustHave {
			if !slices.Contains(paths, p) {
				t.Errorf("modules %v lack %s", paths, p)
			}
		}
	}
}

// TestReadDirTooManyDirectories: directories count against MaxFiles, so
// that a tree of empty directories (or a link into one, such as a link to
// /) cannot keep the walk going.
func TestReadDirTooManyDirectories(t *testing.T) {
	dir := t.TempDir()
	bundletest.WriteFile(t, filepath.Join(dir, "authz.rego"), []byte(bundletest.Policy("authz", 1)))
	for i := range 6 {
		bundletest.Must(t, os.MkdirAll(filepath.Join(dir, fmt.Sprintf("d%d", i)), 0o755))
	}
	_, err := bundles.ReadDir(dir, bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: 5}})
	if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), "more than 5 directories") {
		t.Fatalf("ReadDir: %v, want ErrTooLarge naming the directories", err)
	}
	if _, err := bundles.ReadDir(dir, bundles.ReadOptions{Limits: bundles.Limits{MaxFiles: 6}}); err != nil {
		t.Fatalf("ReadDir with room for them: %v", err)
	}
}

func TestFormatError(t *testing.T) {
	s := &bundles.Snapshot{Modules: []bundles.Module{{Path: "authz/x.rego", Raw: []byte("package authz\n\nallow if {\n  input.x ==\n}\n")}}}
	err := bundletest.Compile(s)
	if err == nil {
		t.Fatal("want a parse error")
	}
	got := bundles.FormatError(err)
	if !regexp.MustCompile(`^authz/x\.rego:\d+:\d+: rego_parse_error: `).MatchString(got) {
		t.Fatalf("FormatError = %q, want file:line:col prefix", got)
	}
	d := bundles.Problems(err)
	if len(d) == 0 || d[0].Line == 0 || d[0].Col == 0 {
		t.Fatalf("details = %+v, want line and col", d)
	}
	if bundles.FormatError(nil) != "" {
		t.Error("FormatError(nil) != \"\"")
	}
}

// TestReadDirRootThroughLink: a root written with ".." after a link
// (inner/.., inner a link into decoy/deep) is read where the kernel
// resolves it (decoy), listing and opening alike. Files were opened from
// the text's directory (inner/.. cleaned away: the tree's root), so
// decoy's a/secret.rego, listed as a regular file, was read through the
// tree's own a, a link out of it.
func TestReadDirRootThroughLink(t *testing.T) {
	outside := t.TempDir()
	bundletest.WriteFile(t, filepath.Join(outside, "secret.rego"), []byte("package outside\n\nleaked := true\n"))
	tree := t.TempDir()
	bundletest.Must(t, os.MkdirAll(filepath.Join(tree, "decoy", "deep"), 0o755))
	bundletest.WriteFile(t, filepath.Join(tree, "decoy", "a", "secret.rego"), []byte("package decoy\n\nx := 1\n"))
	bundletest.Must(t, os.Symlink(filepath.Join("decoy", "deep"), filepath.Join(tree, "inner")))
	bundletest.Must(t, os.Symlink(outside, filepath.Join(tree, "a")))
	s, err := bundles.ReadDir(tree+"/inner/..", bundles.ReadOptions{NoLinksOut: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range s.Modules {
		if strings.Contains(string(m.Raw), "leaked") {
			t.Errorf("%s was read from outside the directory listed: %q", m.Path, m.Raw)
		}
	}
}

// TestVerifyOptionsRetain: the keys a refused whole key file still holds,
// block for block, are kept, and no other; a file that is not whole, and a
// refused shared secret, keep everything.
func TestVerifyOptionsRetain(t *testing.T) {
	a, b, c := bundletest.NewKey(t), bundletest.NewKey(t), bundletest.NewKey(t)
	ring := bundles.VerifyOptions{Key: append(append([]byte(nil), a.Public...), b.Public...)}
	for _, tc := range []struct {
		name string
		data string
		want string // the keys kept; "" for none
	}{
		{"both, beside a private key", string(a.Public) + string(c.Private) + string(b.Public), string(a.Public) + string(b.Public)},
		{"one, beside another key", string(c.Public) + string(b.Public), string(b.Public)},
		{"one, with text around it", "comment\n" + string(a.Public) + "more\n", string(a.Public)},
		{"another key only", string(c.Public), ""},
		{"not PEM: says nothing", "garbage", string(ring.Key)},
		{"empty: says nothing", "", string(ring.Key)},
		{"one, and another cut short: says nothing", string(a.Public) + string(c.Public[:len(c.Public)/2]), string(ring.Key)},
	} {
		kept, ok := ring.Retain([]byte(tc.data))
		if ok != (tc.want != "") || string(kept.Key) != tc.want {
			t.Errorf("%s: kept %q (%v), want %q", tc.name, kept.Key, ok, tc.want)
		}
	}
	// A refused shared secret cannot tell what it no longer holds.
	secret := bundles.VerifyOptions{Key: []byte(strings.Repeat("k", 32)), Algorithm: "HS256"}
	if kept, ok := secret.Retain([]byte("k")); !ok || !bytes.Equal(kept.Key, secret.Key) {
		t.Error("a refused shared secret revoked the one in service")
	}
}

// weakRSA is a PEM public key of 1,024 bits, too weak to verify with.
func weakRSA(t *testing.T) string {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// TestReadTarballNotGzip: content that is not gzip'd (an error page served
// in a bundle's place, however short, a plain tar, nothing) is refused
// saying so, ErrNotGzip, by both readers, streamed or in memory; gzip's
// own "invalid header" or "unexpected EOF" read like a damaged archive.
// A gzip stream cut short is still a damaged archive.
func TestReadTarballNotGzip(t *testing.T) {
	good := bundletest.Tarball(t, map[string]string{"authz/p.rego": bundletest.Policy("authz", 1)}, nil, "r1", nil)
	for _, tc := range []struct {
		name    string
		content []byte
		notGzip bool
	}{
		{name: "an error page", content: []byte("<html><body>502 Bad Gateway</body></html>\n"), notGzip: true},
		{name: "a short body", content: []byte("oops"), notGzip: true},
		{name: "one byte", content: []byte{0x1f}, notGzip: true},
		{name: "nothing", content: nil, notGzip: true},
		{name: "a gzip stream cut short", content: good[:len(good)/2]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, streamed := bundles.ReadTarball(bytes.NewReader(tc.content), bundles.TarballOptions{})
			_, inMemory := bundles.ReadTarballBytes(tc.content, bundles.TarballOptions{})
			for _, err := range []error{streamed, inMemory} {
				if !errors.Is(err, bundles.ErrRead) || errors.Is(err, bundles.ErrNotGzip) != tc.notGzip {
					t.Errorf("err = %v; want ErrRead, ErrNotGzip %v", err, tc.notGzip)
				}
				if tc.notGzip && !strings.Contains(err.Error(), "its content is not gzip'd") {
					t.Errorf("err = %v; want it to say its content is not gzip'd", err)
				}
			}
		})
	}
}
