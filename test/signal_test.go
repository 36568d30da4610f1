package test

import (
	"errors"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestSecondSignalEndsTheProcess: the first SIGINT asks a command to stop;
// one whose work does not heed that (here decide, reading its input from
// a pipe that never closes; a test stuck in a built-in is another) still
// ends at the second, as a second Ctrl-C should. It did not: every signal
// after the first was swallowed, and only SIGKILL ended it.
func TestSecondSignalEndsTheProcess(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	authztest.WriteFile(t, filepath.Join(dir, "authz", "authz.rego"), "package authz\n\ndefault allow := false\n")
	cmd := exec.Command(verdictBin, "decide", "--policies", dir, "--input", "-")
	stdin, err := cmd.StdinPipe() // held open: the read never ends
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	time.Sleep(500 * time.Millisecond) // reading its input by now
	for range 2 {
		_ = cmd.Process.Signal(syscall.SIGINT)
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Errorf("decide ended with %v, want the signal's exit", err)
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatal("decide was still running 10 s after a second SIGINT")
	}
}
