package test

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// needBinary finds an external program the test drives (curl, nginx,
// caddy): in PATH, else at one of the fallback paths. When it is missing
// the test is skipped, except on CI (CI=true), where skipping would hide
// the gap: there it fails.
func needBinary(t *testing.T, name string, fallbacks ...string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, p := range fallbacks {
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	msg := name + " is not installed (make test installs it with test/install-deps.sh)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true, so this test may not skip")
	}
	t.Skip(msg + "; skipping")
	return ""
}

// demoCommand is one ready-to-paste request the demo prints: its comment
// line and its curl command line.
type demoCommand struct {
	comment, command string
}

// demoCommands returns the commented curl lines of the demo text in out.
func demoCommands(out string) []demoCommand {
	var cmds []demoCommand
	comment := ""
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "# "):
			comment = strings.TrimPrefix(line, "# ")
		case strings.HasPrefix(line, "curl "):
			cmds = append(cmds, demoCommand{comment: comment, command: line})
			comment = ""
		}
	}
	return cmds
}

// TestDemo runs "verdict serve" with no configuration (only --addr
// 127.0.0.1:0) as a new user would, and runs every curl command the demo
// prints exactly as printed, through sh, checking the answer each one
// claims: allow, deny, anonymous public allow, and forward-auth 200 with
// the X-Verdict-* headers. The demo must store nothing under HOME.
func TestDemo(t *testing.T) {
	t.Parallel()
	curl := needBinary(t, "curl", "/usr/bin/curl")
	p := startVerdict(t, startOptions{Args: []string{"--addr", "127.0.0.1:0"}})

	// The demo text follows readiness closely; wait for all of it.
	var cmds []demoCommand
	eventually(t, 5*time.Second, func() string {
		cmds = demoCommands(p.Stderr.String())
		if len(cmds) < 4 {
			return "the demo printed fewer than 4 curl commands"
		}
		return ""
	})
	if !strings.Contains(p.Stderr.String(), "NOT FOR PRODUCTION") {
		t.Errorf("the demo text does not warn that it is not for production")
	}

	kinds := map[string]int{}
	for _, c := range cmds {
		if !strings.Contains(c.command, "http://"+p.Addr+"/") {
			t.Errorf("demo command %q does not target the bound address %s", c.command, p.Addr)
			continue
		}
		kind := ""
		switch {
		case strings.HasPrefix(c.comment, "allow, anonymous"):
			kind = "anonymous"
		case strings.HasPrefix(c.comment, "allow"):
			kind = "allow"
		case strings.HasPrefix(c.comment, "deny"):
			kind = "deny"
		case strings.HasPrefix(c.comment, "forward-auth"):
			kind = "forward-auth"
		default:
			t.Errorf("demo command with an unexpected comment %q: %s", c.comment, c.command)
			continue
		}
		kinds[kind]++
		t.Run(kind, func(t *testing.T) {
			out := runShell(t, curl, c.command)
			switch kind {
			case "allow", "anonymous", "deny":
				a := response{Status: 200, Body: []byte(out)}.JSON(t)
				want := kind != "deny"
				if a.Allow != want || a.Error != nil || len(a.Reasons) == 0 || a.ID == "" || a.Revision == "" {
					t.Errorf("%s\nanswered %s\nwant a decision with allow=%v, reasons, decision_id and revision", c.command, out, want)
				}
				if kind == "anonymous" && a.Headers["x-verdict-subject"] != "" {
					t.Errorf("anonymous allow names a subject: %s", out)
				}
				if kind == "allow" && a.Headers["x-verdict-subject"] != "alice" {
					t.Errorf("allow does not name subject alice in its headers: %s", out)
				}
			case "forward-auth":
				head, _, _ := strings.Cut(strings.ReplaceAll(out, "\r\n", "\n"), "\n\n")
				lines := strings.Split(head, "\n")
				if !strings.HasPrefix(lines[0], "HTTP/1.1 200") {
					t.Fatalf("%s\nanswered %q, want HTTP/1.1 200", c.command, lines[0])
				}
				got := map[string]string{}
				for _, l := range lines[1:] {
					k, v, _ := strings.Cut(l, ":")
					got[strings.ToLower(k)] = strings.TrimSpace(v)
				}
				for k, want := range map[string]string{
					"x-verdict-subject": "alice",
					"x-verdict-roles":   "viewer",
					"x-verdict-action":  "orders:read",
				} {
					if got[k] != want {
						t.Errorf("forward-auth header %s = %q, want %q\n%s", k, got[k], want, head)
					}
				}
			}
		})
	}
	for _, k := range []string{"allow", "deny", "anonymous", "forward-auth"} {
		if kinds[k] != 1 {
			t.Errorf("the demo printed %d %q commands, want 1", kinds[k], k)
		}
	}

	// Every decision was logged to stdout, and the token never was.
	eventually(t, 2*time.Second, func() string {
		if n := strings.Count(p.Stdout.String(), "\n"); n < len(cmds) {
			return "fewer decision-log lines than requests on stdout"
		}
		return ""
	})
	if tok := demoToken(cmds); tok == "" {
		t.Errorf("no bearer token in the forward-auth command")
	} else if strings.Contains(p.Stdout.String(), tok) {
		t.Errorf("the decision log contains the raw token")
	}

	p.Stop(t)
	// "whose key was generated at start and is never stored"
	_ = filepath.WalkDir(p.Home, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("the demo wrote %s under HOME", path)
		}
		return nil
	})
}

// demoToken returns the bearer token of the forward-auth command.
func demoToken(cmds []demoCommand) string {
	for _, c := range cmds {
		if _, rest, ok := strings.Cut(c.command, "Bearer "); ok {
			tok, _, _ := strings.Cut(rest, "'")
			return tok
		}
	}
	return ""
}

// runShell runs a printed command line through sh -c, as a user pasting it
// would, with curl resolved to the given path, and returns its stdout.
func runShell(t *testing.T, curl, command string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", command)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(curl)+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stderr authztest.SyncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh -c %q: %v\n%s", command, err, stderr.String())
	}
	return string(out)
}

// TestDemoTrustsVerdictToken: the demo also trusts the key "verdict token"
// keeps, when there is one, so that the tokens a newcomer mints (another
// subject, other roles) work against it; it says so.
func TestDemoTrustsVerdictToken(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	mint := exec.Command(verdictBin, "token", "--sub", "bob", "--roles", "editor")
	mint.Env = append(os.Environ(), homeEnv(home)...)
	out, err := mint.Output()
	if err != nil {
		t.Fatalf("verdict token: %v", err)
	}
	bob := strings.TrimSpace(string(out))
	p := startVerdict(t, startOptions{Args: []string{"--addr", "127.0.0.1:0"}, Env: homeEnv(home)})
	eventually(t, 5*time.Second, func() string {
		if !strings.Contains(p.Stderr.String(), "also trusts the key verdict token keeps") {
			return "the demo does not say it trusts verdict token's key"
		}
		return ""
	})
	a := p.decideOK(t, mustJSON(t, map[string]any{"token": bob, "action": "orders:write"}))
	if !a.Allow || a.Headers["x-verdict-subject"] != "bob" {
		t.Errorf("bob, an editor, writing orders with a verdict token token: %+v, want allowed", a)
	}
}
