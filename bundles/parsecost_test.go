package bundles_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"
	pb "github.com/open-policy-agent/opa/v1/bundle/v1pb"
	"github.com/open-policy-agent/opa/v1/util"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/internal/bundletest"
	"github.com/verdict-pdp/verdict/policies"
)

// signedTarball returns a bundle archive of files with a .signatures.json,
// made with key, that covers signed: the files as the signer saw them.
// Passing other files than signed is a replay: a signature from the real
// signer next to content it never signed.
func signedTarball(t *testing.T, key bundletest.Key, signed, files map[string][]byte) []byte {
	t.Helper()
	return signedTarballWith(t, "RS256", string(key.Private), signed, files)
}

// signedTarballWith is signedTarball with a key (PEM, or an HMAC secret)
// of algorithm alg.
func signedTarballWith(t *testing.T, alg, private string, signed, files map[string][]byte) []byte {
	t.Helper()
	infos := make([]bundle.FileInfo, 0, len(signed))
	for name, data := range signed {
		var v any = data
		if bundle.IsStructuredDoc(name) {
			bundletest.Must(t, util.Unmarshal(data, &v))
		}
		h, err := bundle.NewSignatureHasher(bundle.SHA256)
		bundletest.Must(t, err)
		sum, err := h.HashFile(v)
		bundletest.Must(t, err)
		infos = append(infos, bundle.NewFile(name, hex.EncodeToString(sum), string(bundle.SHA256)))
	}
	token, err := bundle.GenerateSignedToken(infos, bundle.NewSigningConfig(private, alg, ""), bundles.DefaultKeyID)
	bundletest.Must(t, err)
	sig, err := json.Marshal(bundle.SignaturesConfig{Signatures: []string{token}})
	bundletest.Must(t, err)
	all := maps.Clone(files)
	all[".signatures.json"] = sig
	return writeTar(t, all)
}

// allocated runs f and returns how many bytes it allocated and how long it
// took.
func allocated(f func()) (uint64, time.Duration) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	f()
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, d
}

// parseBomb is a data file just under DefaultMaxFileBytes whose parse by
// OPA costs about a gigabyte, every few bytes being another value, and the
// small file a signer once signed at the same path.
type parseBomb struct {
	name, file, small string
	data              []byte
}

func parseBombs() []parseBomb {
	n := (bundles.DefaultMaxFileBytes - 1) / 3
	return []parseBomb{
		{name: "yaml", file: "lists/data.yaml", small: "- []\n", data: bytes.Repeat([]byte("- []\n"), 3<<20)},
		{name: "json", file: "lists/data.json", small: "[[]]", data: []byte("[" + strings.Repeat("[],", n-1) + "[]]")},
	}
}

// TestDataParseBombRefusedBeforeParsing is the signature-replay attack: a
// signature the real signer once made over a small data file, served next
// to a data file of millions of tiny values. OPA's signature check parses a
// data file before comparing its digest, so without an estimate first the
// read costs about a gigabyte before it is refused. Unsigned bundles and
// directories parse the same file the same way. Each read must be refused
// as too large, quickly, having allocated little more than the file
// itself. (Before the estimate, the YAML took 4-6 s and 1.6-2 GiB, the
// JSON 1-2 s and 0.7-1.3 GiB, and unsigned they were accepted.)
func TestDataParseBombRefusedBeforeParsing(t *testing.T) {
	const allowance = 4 << 20 // decompressor, tar reader, errors
	key := bundletest.NewKey(t)
	verify := bundles.VerifyOptions{Key: key.Public}
	for _, bomb := range parseBombs() {
		mods := map[string][]byte{"authz/authz.rego": []byte(bundletest.Policy("authz", 1))}
		legit := maps.Clone(mods)
		legit[bomb.file] = []byte(bomb.small)
		files := maps.Clone(mods)
		files[bomb.file] = bomb.data
		if _, err := bundles.ReadTarballBytes(signedTarball(t, key, legit, legit), bundles.TarballOptions{Verify: verify}); err != nil {
			t.Fatalf("%s: the legitimately signed bundle: %v", bomb.name, err)
		}
		replayed := signedTarball(t, key, legit, files)
		unsigned := writeTar(t, files)
		fsys := bundletest.MapFS(files)
		reads := []struct {
			name string
			read func() error
		}{
			{name: "signed, replayed signature", read: func() error {
				_, err := bundles.ReadTarballBytes(replayed, bundles.TarballOptions{Verify: verify})
				return err
			}},
			{name: "signed, no key configured", read: func() error {
				_, err := bundles.ReadTarballBytes(replayed, bundles.TarballOptions{})
				return err
			}},
			{name: "unsigned", read: func() error {
				_, err := bundles.ReadTarball(bytes.NewReader(unsigned), bundles.TarballOptions{})
				return err
			}},
			{name: "directory", read: func() error {
				_, err := bundles.ReadFS(fsys, bundles.ReadOptions{})
				return err
			}},
		}
		for _, rd := range reads {
			t.Run(bomb.name+"/"+rd.name, func(t *testing.T) {
				var err error
				alloc, took := allocated(func() { err = rd.read() })
				t.Logf("%d-byte %s refused in %v, TotalAlloc %.1f MiB: %v", len(bomb.data), bomb.file, took, float64(alloc)/(1<<20), err)
				if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) {
					t.Fatalf("err = %v, want ErrTooLarge and ErrRead", err)
				}
				if msg := err.Error(); !strings.Contains(msg, bomb.file) || !strings.Contains(msg, fmt.Sprint(bundles.DefaultMaxUnpackedBytes)) {
					t.Errorf("err = %v, want it to name %s and the %d-byte limit", err, bomb.file, bundles.DefaultMaxUnpackedBytes)
				}
				if bound := uint64(2*len(bomb.data) + allowance); alloc > bound {
					t.Errorf("allocated %d bytes refusing a %d-byte file, want at most %d", alloc, len(bomb.data), bound)
				}
				if took > 2*time.Second {
					t.Errorf("refusing took %v, want it done from a byte scan in well under 2s", took)
				}
			})
		}
	}
}

// TestForgedSignaturePayloadRefusedBeforeParsing: a .signatures.json whose
// JWT no key signed, its payload millions of empty file entries, passes
// the parse estimate (the JWT is one string), and OPA's verifier decodes
// and parses the payload before it checks the signature: ~1.1 GiB
// allocated and a 540 MiB heap for a 16 KB archive. The signature is
// checked first now, so refusing it costs a few times the file itself.
func TestForgedSignaturePayloadRefusedBeforeParsing(t *testing.T) {
	const allowance = 4 << 20 // decompressor, tar reader, errors
	key, other := bundletest.NewKey(t), bundletest.NewKey(t)
	n := (bundles.DefaultMaxFileBytes*3/4 - 64) / 3
	payload := `{"files":[` + strings.Repeat("{},", n-1) + `{}]}`
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"RS256","kid":"default"}`))
	jws := header + "." + base64.RawURLEncoding.EncodeToString([]byte(payload)) + ".c2ln"
	sigs, err := json.Marshal(map[string]any{"signatures": []string{jws}})
	if err != nil {
		t.Fatal(err)
	}
	archive := writeTar(t, map[string][]byte{
		"authz/authz.rego": []byte(bundletest.Policy("authz", 1)),
		".signatures.json": sigs,
	})
	for n, keys := range map[int][]byte{1: key.Public, 2: append(append([]byte{}, key.Public...), other.Public...)} {
		t.Run(fmt.Sprintf("%d keys", n), func(t *testing.T) {
			alloc, took := allocated(func() {
				_, err = bundles.ReadTarballBytes(archive, bundles.TarballOptions{Verify: bundles.VerifyOptions{Key: keys}})
			})
			t.Logf("%d-byte archive (%d-byte .signatures.json) refused in %v, TotalAlloc %.1f MiB: %v",
				len(archive), len(sigs), took, float64(alloc)/(1<<20), err)
			if !errors.Is(err, bundles.ErrSignature) {
				t.Fatalf("err = %v, want ErrSignature", err)
			}
			// The file read, its JWT decoded, and the signed bytes hashed
			// once for each key.
			if bound := uint64((2+n)*len(sigs) + allowance); alloc > bound {
				t.Errorf("allocated %.1f MiB refusing a forged signature, want at most %.1f MiB (its payload must not be parsed)",
					float64(alloc)/(1<<20), float64(bound)/(1<<20))
			}
		})
	}
}

// TestSignatureAlgorithms: a bundle signed with each family of algorithm
// (as OPA signs it) verifies with its key and is refused with another one
// of the same kind: the signature check made before OPA's agrees with it.
func TestSignatureAlgorithms(t *testing.T) {
	ecKey := func(c elliptic.Curve) (private, public string) {
		k, err := ecdsa.GenerateKey(c, rand.Reader)
		bundletest.Must(t, err)
		der, err := x509.MarshalPKCS8PrivateKey(k)
		bundletest.Must(t, err)
		pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
		bundletest.Must(t, err)
		return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
			string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}))
	}
	rsaKey := func() (private, public string) {
		k := bundletest.NewKey(t)
		return string(k.Private), string(k.Public)
	}
	secret := func() (private, public string) {
		b := make([]byte, 64)
		_, _ = rand.Read(b)
		s := base64.RawURLEncoding.EncodeToString(b)
		return s, s
	}
	files := map[string][]byte{"authz/authz.rego": []byte(bundletest.Policy("authz", 1)), "data.json": []byte(`{"a":1}`)}
	for _, tc := range []struct {
		alg string
		key func() (private, public string)
	}{
		{"RS256", rsaKey}, {"PS256", rsaKey}, {"RS512", rsaKey},
		{"ES256", func() (string, string) { return ecKey(elliptic.P256()) }},
		{"ES384", func() (string, string) { return ecKey(elliptic.P384()) }},
		{"ES512", func() (string, string) { return ecKey(elliptic.P521()) }},
		{"HS256", secret}, {"HS512", secret},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			private, public := tc.key()
			_, otherPublic := tc.key()
			archive := signedTarballWith(t, tc.alg, private, files, files)
			read := func(key string) error {
				_, err := bundles.ReadTarballBytes(archive, bundles.TarballOptions{Verify: bundles.VerifyOptions{Key: []byte(key), Algorithm: tc.alg}})
				return err
			}
			if err := read(public); err != nil {
				t.Errorf("with its key: %v", err)
			}
			if err := read(otherPublic); !errors.Is(err, bundles.ErrSignature) {
				t.Errorf("with another key: %v, want ErrSignature", err)
			}
		})
	}
}

// usersJSON returns a JSON array of user records with string fields, as a
// directory export might hold, of at least size bytes, and its length.
func usersJSON(size int) ([]byte, int) {
	departments := []string{"engineering", "finance", "sales", "support", "legal"}
	roles := []string{"viewer", "editor", "admin", "auditor"}
	var b bytes.Buffer
	b.WriteByte('[')
	n := 0
	for ; b.Len() < size; n++ {
		if n > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"u%06d","name":"User Number %d","email":"user%d@example.com","department":%q,`+
			`"title":"Senior Engineer","manager":"u%06d","roles":["viewer",%q],"active":true}`,
			n, n, n, departments[n%len(departments)], n/10, roles[n%len(roles)])
	}
	b.WriteByte(']')
	return b.Bytes(), n
}

// usersYAML returns a YAML sequence of n user records.
func usersYAML(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		fmt.Fprintf(&b, "- id: u%06d\n  name: User Number %d\n  email: user%d@example.com\n  roles: [viewer, editor]\n", i, i, i)
	}
	return b.Bytes()
}

// TestRealisticDataLoads: data files of a realistic shape load at the
// default limits, whether signed, unsigned or in a directory: 5 MiB of
// JSON records and 45 KB of YAML records in one bundle, and the
// repository's own policies/data.json.
func TestRealisticDataLoads(t *testing.T) {
	key := bundletest.NewKey(t)
	records, n := usersJSON(5 << 20)
	yamlRecords := usersYAML(500)
	files := map[string][]byte{
		"authz/authz.rego": []byte(bundletest.Policy("authz", 1)),
		"users/data.json":  records,
		"people/data.yaml": yamlRecords,
	}
	for name, data := range map[string][]byte{"users/data.json": records, "people/data.yaml": yamlRecords} {
		t.Logf("%s: %d bytes, estimated to take %d bytes to parse (%.0f%% of the default limit)", name, len(data),
			bundles.ParseCost(name, data), 100*float64(bundles.ParseCost(name, data))/bundles.DefaultMaxUnpackedBytes)
	}
	fsys := bundletest.MapFS(files)
	signed := signedTarball(t, key, files, files)
	reads := []struct {
		name string
		read func() (*bundles.Snapshot, error)
	}{
		{name: "signed", read: func() (*bundles.Snapshot, error) {
			return bundles.ReadTarballBytes(signed, bundles.TarballOptions{Verify: bundles.VerifyOptions{Key: key.Public}})
		}},
		{name: "unsigned", read: func() (*bundles.Snapshot, error) {
			return bundles.ReadTarballBytes(writeTar(t, files), bundles.TarballOptions{})
		}},
		{name: "directory", read: func() (*bundles.Snapshot, error) { return bundles.ReadFS(fsys, bundles.ReadOptions{}) }},
	}
	for _, rd := range reads {
		t.Run(rd.name, func(t *testing.T) {
			s, err := rd.read()
			if err != nil {
				t.Fatal(err)
			}
			users, _ := s.Data["users"].([]any)
			people, _ := s.Data["people"].([]any)
			if len(users) != n || len(people) != 500 {
				t.Fatalf("read %d users and %d people, want %d and 500", len(users), len(people), n)
			}
		})
	}
	t.Run("policies/data.json", func(t *testing.T) {
		s, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{})
		if err != nil || s.Data["roles"] == nil {
			t.Fatalf("ReadFS(policies.FS()) = %v; want the default policy's data", err)
		}
	})
}

// TestDataParseCostAddsUp: the estimates of a bundle's data files add up
// against one limit, so that many files each within it cannot together
// exceed it. The error names the file that crosses it.
func TestDataParseCostAddsUp(t *testing.T) {
	records, _ := usersJSON(64 << 10)
	limit := bundles.ParseCost("a/data.json", records) * 3 / 2
	files := map[string][]byte{"a/data.json": records, "b/data.json": records}
	for _, tc := range []struct {
		name    string
		files   []string
		wantErr bool
	}{
		{name: "one file within the limit", files: []string{"a/data.json"}},
		{name: "two files over it together", files: []string{"a/data.json", "b/data.json"}, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, name := range tc.files {
				fsys[name] = &fstest.MapFile{Data: files[name]}
			}
			_, err := bundles.ReadFS(fsys, bundles.ReadOptions{Limits: bundles.Limits{MaxUnpackedBytes: limit}})
			if !tc.wantErr {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, bundles.ErrTooLarge) || !strings.Contains(err.Error(), `"b/data.json"`) ||
				!strings.Contains(err.Error(), fmt.Sprint(limit)) {
				t.Fatalf("err = %v, want ErrTooLarge naming b/data.json and the %d-byte limit", err, limit)
			}
		})
	}
}

// TestYAMLBeyondTheScan: YAML whose parse by OPA grows faster than its
// size, which no byte scan can see, is refused quickly and cheaply. Equal
// keys that OPA does not merge (null, timestamp, tagged) make go-yaml
// write an error message for every pair of them: 16 KB of "?" lines would
// take 5 GB. Aliases decode an anchored value again each time. A mapping
// of 20,000 keys takes go-yaml 2×10⁸ key comparisons.
func TestYAMLBeyondTheScan(t *testing.T) {
	anchored := []byte("p: [" + strings.Repeat("1,", 4000) + "1]\n" +
		"a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\n" +
		"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\n" +
		"e: [" + strings.Repeat("*d,", 20) + "*d]\n")
	var keys bytes.Buffer
	for i := range 20_000 {
		fmt.Fprintf(&keys, "k%d: v\n", i)
	}
	for _, tc := range []struct {
		name  string
		data  []byte
		limit int64 // 0: the default
	}{
		{name: "null keys", data: bytes.Repeat([]byte("?\n"), 8000)},
		{name: "timestamp keys", data: bytes.Repeat([]byte("2001-01-01: 1\n"), 4000)},
		{name: "tagged keys", data: bytes.Repeat([]byte("!!int x: 1\n"), 4000)},
		{name: "aliases", data: anchored, limit: 32 << 20},
		{name: "many keys", data: keys.Bytes()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := writeTar(t, map[string][]byte{"x/data.yaml": tc.data})
			var err error
			alloc, took := allocated(func() {
				_, err = bundles.ReadTarballBytes(raw, bundles.TarballOptions{Limits: bundles.Limits{MaxUnpackedBytes: tc.limit}})
			})
			t.Logf("%d bytes of YAML refused in %v, TotalAlloc %.1f MiB: %v", len(tc.data), took, float64(alloc)/(1<<20), err)
			if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) {
				t.Fatalf("err = %v, want ErrTooLarge and ErrRead", err)
			}
			// Refusing costs parsing the file into YAML nodes once: about
			// 60 bytes a byte.
			if bound := uint64(100*len(tc.data) + 4<<20); alloc > bound {
				t.Errorf("allocated %d bytes refusing %d bytes of YAML, want at most %d", alloc, len(tc.data), bound)
			}
		})
	}
}

// TestManifestCostRefusedBeforeParsing: OPA's bundle reader takes any file
// whose name ends in .manifest for the manifest (decoded as JSON) and one
// ending in .manifest.pb for a protobuf manifest, and it checks every pair
// of a manifest's roots for overlap and tries every file_rego_versions
// pattern against every module. The estimate knew only a file named
// .manifest, and nothing of that work: "evil.manifest" of 16 MiB took
// 700 MiB and a .manifest.pb over 900 MiB to read, and were accepted;
// 16,000 roots (130 KB) took 16 s and 3.9 GB, and 20,000 patterns beside
// 1,000 modules took seconds, a few times more of either minutes, and one
// root 5,000 segments deep, beside data as deep, 7 s and 1.2 GB. Each
// must be refused as too large, from a scan, before OPA reads it.
func TestManifestCostRefusedBeforeParsing(t *testing.T) {
	const allowance = 4 << 20 // decompressor, tar reader, errors
	listOf := func(n int, item func(i int) string) string {
		items := make([]string, n)
		for i := range items {
			items[i] = item(i)
		}
		return strings.Join(items, ",")
	}
	protoBomb := func() []byte {
		// metadata {"a": [Value{}, Value{}, …]}: two bytes a value.
		n := (bundles.DefaultMaxFileBytes - 64) / 2
		list := bytes.Repeat([]byte{0x0a, 0x00}, n)
		list = append(protowire.AppendVarint([]byte{0x32}, uint64(len(list))), list...)                   // Value.list_value
		field := append([]byte{0x0a, 0x01, 'a', 0x12}, protowire.AppendVarint(nil, uint64(len(list)))...) // key, value
		field = append(field, list...)
		entry := append(protowire.AppendVarint([]byte{0x0a}, uint64(len(field))), field...) // Struct.fields
		return append(protowire.AppendVarint([]byte{0x32}, uint64(len(entry))), entry...)   // Manifest.metadata
	}
	modules := map[string][]byte{}
	for i := range 200 {
		modules[fmt.Sprintf("m%d/m.rego", i)] = []byte(fmt.Sprintf("package m%d\n", i))
	}
	for _, tc := range []struct {
		name, file string
		data       []byte
		modules    map[string][]byte
		noDir      bool // not read as a directory (a hidden name is ignored there)
	}{
		{name: "json named x.manifest", file: "evil.manifest",
			data: []byte(`{"metadata":{"a":[` + strings.Repeat("[],", (bundles.DefaultMaxFileBytes-40)/3-1) + `[]]}}`)},
		{name: "protobuf", file: ".manifest.pb", data: protoBomb(), noDir: true},
		{name: "protobuf named x.manifest.pb", file: "evil.manifest.pb", data: protoBomb()},
		{name: "roots", file: ".manifest",
			data: []byte(`{"roots":[` + listOf(6000, func(i int) string { return fmt.Sprintf(`"r%d"`, i) }) + `]}`)},
		{name: "one deep root", file: ".manifest", modules: map[string][]byte{
			strings.Repeat("a/", 5000) + "data.json": []byte(`{"x":1}`)},
			data:  []byte(`{"roots":["` + strings.Repeat("a/", 5000) + `x"]}`),
			noDir: true}, // fstest.MapFS walks a tree this deep slowly itself
		{name: "deep protobuf root", file: "x.manifest.pb", data: protoManifest(t, "r", strings.Repeat("a/", 5000)+"x")},
		{name: "rego version patterns", file: ".manifest", modules: modules,
			data: []byte(`{"file_rego_versions":{` + listOf(20000, func(i int) string { return fmt.Sprintf(`"p%d/*.rego":1`, i) }) + `}}`)},
	} {
		files := maps.Clone(tc.modules)
		if files == nil {
			files = map[string][]byte{}
		}
		files[tc.file] = tc.data
		unsigned := writeTar(t, files)
		fsys := bundletest.MapFS(files)
		reads := []struct {
			name string
			read func() error
		}{
			{name: "unsigned", read: func() error {
				_, err := bundles.ReadTarball(bytes.NewReader(unsigned), bundles.TarballOptions{})
				return err
			}},
			{name: "directory", read: func() error {
				_, err := bundles.ReadFS(fsys, bundles.ReadOptions{})
				return err
			}},
		}
		if tc.noDir {
			reads = reads[:1]
		}
		for _, rd := range reads {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				var err error
				alloc, took := allocated(func() { err = rd.read() })
				t.Logf("%d-byte %s refused in %v, TotalAlloc %.1f MiB: %v", len(tc.data), tc.file, took, float64(alloc)/(1<<20), err)
				if !errors.Is(err, bundles.ErrTooLarge) || !errors.Is(err, bundles.ErrRead) || !strings.Contains(err.Error(), tc.file) {
					t.Fatalf("err = %v, want ErrTooLarge and ErrRead naming %s", err, tc.file)
				}
				if bound := uint64(4*len(tc.data) + allowance); alloc > bound {
					t.Errorf("allocated %d bytes refusing a %d-byte file, want at most %d", alloc, len(tc.data), bound)
				}
			})
		}
	}
}

// TestManifestWithinEstimateLoads: a manifest of a few roots and
// file_rego_versions patterns, in any of the names OPA reads one by, is
// read as before.
func TestManifestWithinEstimateLoads(t *testing.T) {
	for name, data := range map[string][]byte{
		".manifest":       []byte(`{"revision":"r1","roots":["authz","other"],"file_rego_versions":{"authz/*.rego":1}}`),
		"bundle.manifest": []byte(`{"revision":"r1","roots":["authz","other"]}`),
		".manifest.pb":    protoManifest(t, "r1", "authz", "other"),
	} {
		files := map[string][]byte{"authz/authz.rego": []byte(bundletest.Policy("authz", 1)), name: data}
		s, err := bundles.ReadTarballBytes(writeTar(t, files), bundles.TarballOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if s.Revision != "r1" || len(s.Roots) != 2 {
			t.Errorf("%s: revision %q, roots %q, want r1 and two roots", name, s.Revision, s.Roots)
		}
	}
}

// protoManifest is a protobuf manifest (.manifest.pb) of revision and roots.
func protoManifest(t *testing.T, revision string, roots ...string) []byte {
	t.Helper()
	b, err := proto.Marshal(&pb.Manifest{Revision: &revision, Roots: roots, RootsSet: new(true)})
	bundletest.Must(t, err)
	return b
}
