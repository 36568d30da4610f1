package atomicfile_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/internal/atomicfile"
)

func TestWrite(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string) // before Write
		data    string
		perm    fs.FileMode
		wantDir fs.FileMode // checked when the directory was created by Write
	}{
		{name: "new file in a new directory", data: "one", perm: 0o600, wantDir: 0o700},
		{name: "replaces a file", setup: func(t *testing.T, path string) {
			if err := atomicfile.Write(path, []byte("old content, longer"), 0o644, 0o700); err != nil {
				t.Fatal(err)
			}
		}, data: "new", perm: 0o600},
		{name: "mode is exact", data: "x", perm: 0o644, wantDir: 0o750},
		{name: "empty", data: "", perm: 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state", "doc.json")
			if tc.setup != nil {
				tc.setup(t, path)
			}
			dirPerm := tc.wantDir
			if dirPerm == 0 {
				dirPerm = 0o700
			}
			if err := atomicfile.Write(path, []byte(tc.data), tc.perm, dirPerm); err != nil {
				t.Fatalf("Write: %v", err)
			}
			got, err := os.ReadFile(path)
			if err != nil || string(got) != tc.data {
				t.Fatalf("content = %q, %v; want %q", got, err, tc.data)
			}
			entries, _ := os.ReadDir(filepath.Dir(path))
			if len(entries) != 1 {
				t.Errorf("directory holds %d entries, want the file alone (no temporary left)", len(entries))
			}
			if runtime.GOOS == "windows" {
				return
			}
			if info, _ := os.Stat(path); info.Mode().Perm() != tc.perm {
				t.Errorf("file mode = %v, want %v", info.Mode().Perm(), tc.perm)
			}
			// The umask may clear bits of dirPerm, never add any.
			if info, _ := os.Stat(filepath.Dir(path)); info.Mode().Perm()&^dirPerm != 0 {
				t.Errorf("dir mode = %v, want at most %v", info.Mode().Perm(), dirPerm)
			}
		})
	}
}

// TestWriteFailureKeepsOld: when the rename cannot happen (the target is a
// directory), the old content stays and no temporary file is left.
func TestWriteFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "doc")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "inside"), []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := atomicfile.Write(target, []byte("new"), 0o600, 0o700)
	if err == nil {
		t.Fatal("Write over a directory succeeded")
	}
	var le *os.LinkError
	if !errors.As(err, &le) {
		t.Errorf("error %v is not the file system's *os.LinkError", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want the target alone", len(entries))
	}
	if got, _ := os.ReadFile(filepath.Join(target, "inside")); string(got) != "keep" {
		t.Errorf("target changed: %q", got)
	}
}

// plainName is what Name makes of any key with prefix "p-" and ext ".json".
var plainName = regexp.MustCompile(`^p-[0-9a-f]{16}\.json$`)

// TestName: a persisted document's name is stable across versions (a file
// written by an earlier release is found again after an upgrade), safe for
// any key, and different for different keys.
func TestName(t *testing.T) {
	tests := []struct {
		name, prefix, key, ext, want string
	}{
		{name: "key set of an issuer", prefix: "jwks-", key: "https://issuer.example.com", ext: ".json",
			want: "jwks-605ec2f11533f3f2.json"},
		{name: "no extension", prefix: "bundle-", key: "https://issuer.example.com", want: "bundle-605ec2f11533f3f2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := atomicfile.Name(tc.prefix, tc.key, tc.ext); got != tc.want {
				t.Errorf("Name(%q, %q, %q) = %q, want %q", tc.prefix, tc.key, tc.ext, got, tc.want)
			}
		})
	}
	for _, key := range []string{"../../etc/passwd", "a/b\\c", "\x00", strings.Repeat("x", 4096), ""} {
		got := atomicfile.Name("p-", key, ".json")
		if !plainName.MatchString(got) {
			t.Errorf("Name(%q) = %q, not a plain file name of fixed length", key, got)
		}
	}
	if atomicfile.Name("p-", "https://a.example", "") == atomicfile.Name("p-", "https://b.example", "") {
		t.Error("two keys share a name")
	}
}
