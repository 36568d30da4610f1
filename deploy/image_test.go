package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// runner is a container engine that builds with build.sh and runs images.
type runner struct {
	name string   // podman or docker
	opts []string // run options this machine needs (see runOptions)
}

// containerRunner returns the builder build.sh would use, when it can also
// run containers, and skips the test when none works here.
func containerRunner(t *testing.T) *runner {
	t.Helper()
	out, err := exec.Command("sh", filepath.Join("container", "build.sh"), "--check").CombinedOutput()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 3 {
			t.Skipf("the image is not built: %s", strings.TrimSpace(string(out)))
		}
		t.Fatalf("build.sh --check: %v\n%s", err, out)
	}
	name := strings.TrimSpace(string(out))
	if name == "buildah" {
		t.Skip("the image is not run: buildah builds here, but neither podman nor docker works to run it")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("the image is not built: make image needs make, which is not installed")
	}
	return &runner{name: name}
}

// run runs the engine with args and returns its combined output.
func (r *runner) run(args ...string) ([]byte, error) {
	return exec.Command(r.name, args...).CombinedOutput()
}

// runOptions finds the run options this machine needs to start the image,
// trying `IMAGE --help` with each set in turn, and skips the test when none
// starts it. Some sandboxes (this project's CI machines among them) deny
// CAP_SYS_RESOURCE, so podman's default limits for rootful containers
// (1048576 open files) cannot be set, and mount cgroups in a hybrid layout
// that crun refuses: runc with explicit limits runs there.
func (r *runner) runOptions(t *testing.T, image string) {
	t.Helper()
	limits := []string{"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
	tries := [][]string{nil, limits}
	if _, err := exec.LookPath("runc"); err == nil && r.name == "podman" {
		tries = append(tries, append([]string{"--runtime", "runc"}, limits...))
	}
	var failures []string
	for _, opts := range tries {
		args := append(append([]string{"run", "--rm"}, opts...), image, "--help")
		out, err := r.run(args...)
		if err == nil && bytes.Contains(out, []byte("Usage:")) {
			if len(opts) > 0 {
				t.Logf("%s runs containers here with %q", r.name, opts)
			}
			r.opts = opts
			return
		}
		failures = append(failures, fmt.Sprintf("%s %s: %v: %s", r.name, strings.Join(args, " "), err, bytes.TrimSpace(out)))
	}
	t.Skipf("the image was built, but %s cannot run a container here:\n%s", r.name, strings.Join(failures, "\n"))
}

// TestImage builds the container image with `make image` and runs it as
// the shared-service Deployment does: its arguments, its volumes (the
// ConfigMaps as the kubelet lays them out, the emptyDir), a read-only root
// filesystem, no capabilities, as the image's own non-root user, until it
// is ready, takes a policy edit and stops cleanly on SIGTERM. It also
// checks what the image holds: the entrypoint, the default command, a
// numeric non-root user, no shell. It skips, saying why, where no container
// builder works.
func TestImage(t *testing.T) {
	r := containerRunner(t)
	if _, err := buildVerdict(); err != nil { // warms the build cache for make image
		t.Fatal(err)
	}
	repo := "localhost/verdict-deploy-test"
	version := fmt.Sprintf("test-%d", time.Now().UnixNano())
	image := repo + ":" + version
	build := exec.Command("make", "--no-print-directory", "image",
		"IMAGE="+repo, "VERSION="+version, "IMAGE_BIN="+filepath.Join(t.TempDir(), "verdict"))
	build.Dir = ".." // the module root
	build.Env = append(os.Environ(), "BUILDER="+r.name)
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image with %s: %v", r.name, time.Since(start).Round(time.Millisecond))
	t.Cleanup(func() {
		if out, err := r.run("rmi", "--force", image); err != nil {
			t.Logf("%s rmi %s: %v: %s", r.name, image, err, out)
		}
	})

	out, err := r.run("image", "inspect", "--format", "{{json .Config}}", image)
	if err != nil {
		t.Fatalf("%s image inspect: %v: %s", r.name, err, out)
	}
	var cfg struct {
		User       string
		Entrypoint []string
		Cmd        []string
		Labels     map[string]string
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("image config %s: %v", out, err)
	}
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532 (numeric, not root)", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/verdict"}) {
		t.Errorf("entrypoint %q, want [/verdict]", cfg.Entrypoint)
	}
	if !slices.Equal(cfg.Cmd, []string{"serve", "--config", "/etc/verdict/verdict.yaml"}) {
		t.Errorf("command %q, want serve --config /etc/verdict/verdict.yaml", cfg.Cmd)
	}
	if cfg.Labels["org.opencontainers.image.version"] != version {
		t.Errorf("version label %q, want %q", cfg.Labels["org.opencontainers.image.version"], version)
	}

	r.runOptions(t, image)
	run := func(args ...string) ([]byte, error) {
		return r.run(append(append([]string{"run", "--rm"}, r.opts...), args...)...)
	}
	if out, err := run("--entrypoint", "/bin/sh", image, "-c", "true"); err == nil {
		t.Errorf("the image has a shell: /bin/sh -c true: %s", out)
	}
	// The version stamped by make image (-X main.version), where the CLI
	// reports it.
	switch out, err := run(image, "version"); {
	case bytes.Contains(out, []byte("unknown command")):
		t.Logf("version not checked: this verdict has no version command")
	case err != nil || !bytes.Contains(out, []byte(version)):
		t.Errorf("verdict version: %v: %s, want %s", err, out, version)
	}

	// The shared-service pod, in the container.
	_, p := renderOverlay(t, "shared-service")
	l := layOut(t, p, true)
	name := strings.ReplaceAll(strings.TrimPrefix(image, "localhost/"), ":", "-")
	args := append([]string{"run", "--rm", "--name", name, "--network", "host",
		"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}, r.opts...)
	if r.name == "podman" {
		args = append(args, "--read-only-tmpfs=false") // no /tmp, /run: as on Kubernetes
	}
	for _, mt := range p.mounts {
		mode := ":ro"
		if mt.writable {
			mode = ""
		}
		args = append(args, "--volume", l.dirs[mt.path]+":"+mt.path+mode)
	}
	args = append(args, "--volume", l.keysDir+":"+testKeysPath+":ro", image)
	args = append(args, l.args...)
	t.Cleanup(func() { _, _ = r.run("rm", "--force", name) })
	vp := startProc(t, r.name+" run", exec.Command(r.name, args...))
	exercise(t, l, vp)
}
