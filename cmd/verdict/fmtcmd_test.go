package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

const (
	unformattedRego = "package authz\nallow if {input.x==1}\n"
	formattedRego   = "package authz\n\nallow if input.x == 1\n"
)

// TestFmt: fmt lists the .rego files that are not formatted and changes
// nothing (exit 1), --diff shows the change, --write rewrites them (keeping
// their mode) and a second run finds nothing; the default policies are
// formatted; hidden and editor files, links met in a directory and data
// files are left alone; a module that does not parse is a located problem;
// a named link is refused.
func TestFmt(t *testing.T) {
	if code, out, errOut := verdict(t, "fmt", "../../policies"); code != 0 || out != "" {
		t.Fatalf("the default policies: exit %d, %q %q", code, out, errOut)
	}

	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		authztest.WriteFile(t, p, data)
		return p
	}
	bad := write("authz/rbac.rego", unformattedRego)
	if err := os.Chmod(bad, 0o640); err != nil {
		t.Fatal(err)
	}
	good := write("authz/ok.rego", formattedRego)
	hidden := write(".git/x.rego", unformattedRego)
	backup := write("authz/rbac.rego~", unformattedRego)
	data := write("authz/data.json", `{"a":1}`)
	elsewhere := filepath.Join(t.TempDir(), "outside.rego")
	authztest.WriteFile(t, elsewhere, unformattedRego)
	if err := os.Symlink(elsewhere, filepath.Join(dir, "authz", "link.rego")); err != nil {
		t.Fatal(err)
	}
	unchanged := func(what string) {
		t.Helper()
		for p, want := range map[string]string{hidden: unformattedRego, backup: unformattedRego, data: `{"a":1}`,
			elsewhere: unformattedRego, good: formattedRego} {
			if got, _ := os.ReadFile(p); string(got) != want {
				t.Errorf("%s: %s changed to %q", what, p, got)
			}
		}
	}

	code, out, errOut := verdict(t, "fmt", dir)
	if code != 1 || out != bad+"\n" || !strings.Contains(errOut, filepath.Join(dir, "authz", "link.rego")+": a symbolic link, not formatted") {
		t.Fatalf("list: exit %d, %q %q; want 1, %s, and the link named", code, out, errOut, bad)
	}
	if got, _ := os.ReadFile(bad); string(got) != unformattedRego {
		t.Fatal("listing changed the file")
	}
	code, out, _ = verdict(t, "fmt", "--diff", bad)
	wantDiff := "--- " + bad + "\n+++ " + bad + " (formatted)\n@@ -1,2 +1,3 @@\n package authz\n-allow if {input.x==1}\n+\n+allow if input.x == 1\n"
	if code != 1 || out != wantDiff {
		t.Fatalf("diff: exit %d\n%s\nwant\n%s", code, out, wantDiff)
	}
	noBreak := write("authz/nobreak.rego", strings.TrimSuffix(formattedRego, "\n"))
	code, out, _ = verdict(t, "fmt", "--diff", noBreak)
	wantDiff = "--- " + noBreak + "\n+++ " + noBreak + " (formatted)\n@@ -3 +3 @@\n-allow if input.x == 1\n\\ No newline at end of file\n+allow if input.x == 1\n"
	if code != 1 || out != wantDiff {
		t.Fatalf("diff of a file without a final line break: exit %d\n%s\nwant\n%s", code, out, wantDiff)
	}
	if err := os.Remove(noBreak); err != nil {
		t.Fatal(err)
	}
	code, out, _ = verdict(t, "fmt", "--write", dir)
	if code != 0 || out != bad+"\n" {
		t.Fatalf("write: exit %d, %q", code, out)
	}
	if got, _ := os.ReadFile(bad); string(got) != formattedRego {
		t.Fatalf("written: %q", got)
	}
	if info, _ := os.Stat(bad); info.Mode().Perm() != 0o640 {
		t.Errorf("mode %v after writing, want 0640", info.Mode().Perm())
	}
	unchanged("write")
	if code, out, _ := verdict(t, "fmt", dir); code != 0 || out != "" {
		t.Fatalf("after writing: exit %d, %q", code, out)
	}

	broken := write("authz/broken.rego", "package authz\n\nallow if {\n")
	code, out, errOut = verdict(t, "fmt", "--write", dir)
	if code != 1 || !strings.Contains(errOut, broken+":4") || !strings.Contains(errOut, "rego_parse_error") {
		t.Fatalf("a module that does not parse: exit %d, %q %q", code, out, errOut)
	}
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "authz", "link.rego")
	if code, out, _ := verdict(t, "fmt", link); code != 1 || out != link+"\n" {
		t.Fatalf("a named link, listed: exit %d, %q", code, out)
	}
	if code, _, errOut := verdict(t, "fmt", "--write", link); code != 2 || !strings.Contains(errOut, "symbolic link") {
		t.Fatalf("a named link, to be written: exit %d, %q", code, errOut)
	}
	dirLink := filepath.Join(t.TempDir(), "policies")
	if err := os.Symlink(dir, dirLink); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := verdict(t, "fmt", dirLink); code != 0 || out != "" {
		t.Fatalf("a named link to the (formatted) directory: exit %d, %q %q", code, out, errOut)
	}
	if code, _, errOut := verdict(t, "fmt", t.TempDir()); code != 2 || !strings.Contains(errOut, "holds no .rego files") {
		t.Fatalf("a directory without .rego files: exit %d, %q", code, errOut)
	}
	if code, _, _ := verdict(t, "fmt", data); code != 2 {
		t.Fatalf("a data file named: exit %d, want 2", code)
	}
	if code, _, errOut := verdict(t, "fmt"); code != 2 || !strings.Contains(errOut, "name the Rego files") {
		t.Fatalf("no path: exit %d, %q", code, errOut)
	}
	unchanged("the end")
}

// TestFmtWriteRefusesALinkInThePath names, from the working directory, a
// link to a directory of another tree in the spellings that os.Lstat
// resolves through it: fmt --write refuses each and changes nothing there.
func TestFmtWriteRefusesALinkInThePath(t *testing.T) {
	other := writeTree(t, map[string]string{"policies/authz.rego": unformattedRego})
	work := t.TempDir()
	if err := os.Symlink(filepath.Join(other, "policies"), filepath.Join(work, "policies")); err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, filepath.Join(work, "inner", "keep.txt"), "")
	t.Chdir(work)
	for _, path := range []string{"policies/", "policies/.", "policies/authz.rego", "./policies//", "inner/../policies"} {
		t.Run(path, func(t *testing.T) {
			code, out, errOut := verdict(t, "fmt", "--write", path)
			if code != 2 || !strings.Contains(errOut, "fmt never writes through a link") {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 refusing the link", code, out, errOut)
			}
			if got, _ := os.ReadFile(filepath.Join(other, "policies", "authz.rego")); string(got) != unformattedRego {
				t.Fatalf("fmt --write %s wrote through the link: %q", path, got)
			}
		})
	}
	if code, out, _ := verdict(t, "fmt", "policies/"); code != 1 || out != "policies/authz.rego\n" {
		t.Errorf("listing through the link: exit %d, %q; want 1 and the file", code, out)
	}
}

// TestFmtDiffIsPrintable: --diff shows a file's control characters as Go
// escapes, each line keeping its +, - or space.
func TestFmtDiffIsPrintable(t *testing.T) {
	dir := writeTree(t, map[string]string{
		"authz.rego": "package authz\n# \x1b]0;title\x07 \x1b[2J\r::warning::x\nallow if {input.x==1}\n",
	})
	file := filepath.Join(dir, "authz.rego")
	code, out, _ := verdict(t, "fmt", "--diff", file)
	want := "--- " + file + "\n+++ " + file + " (formatted)\n@@ -1,3 +1,4 @@\n package authz\n" +
		"+\n # \\x1b]0;title\\a \\x1b[2J\\r::warning::x\n-allow if {input.x==1}\n+allow if input.x == 1\n"
	if code != 1 || out != want {
		t.Errorf("exit %d, diff\n%q\nwant\n%q", code, out, want)
	}
}
