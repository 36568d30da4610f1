package main

// Reading the policy set that check, test, decide and replay take as an
// argument, and the exit status of a policy set that cannot be used.

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/internal/regularfile"
	"github.com/verdict-pdp/verdict/server/config"
)

// policyLimits is the configuration's bound on reading a policy set
// (policy.max_unpacked_bytes, policy.max_files); a file's own size is left
// to bundles.DefaultMaxFileBytes.
func policyLimits(cfg *config.Config) bundles.Limits {
	return bundles.Limits{MaxUnpackedBytes: int64(cfg.Policy.MaxUnpackedBytes), MaxFiles: cfg.Policy.MaxFiles}
}

// policyKind is what a policy path names.
type policyKind int

const (
	policyDir    policyKind = iota // a policy directory
	policyModule                   // one .rego file
	policyBundle                   // an OPA bundle file (.tar.gz)
)

// kindOf tells what path names: a directory, a .rego file, or a bundle
// file (gzip'd, as OPA writes bundles). It fails when path does not exist
// or is none of these, naming what it wants.
func kindOf(path string) (policyKind, error) {
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	switch {
	case info.IsDir():
		return policyDir, nil
	case strings.HasSuffix(path, ".rego"):
		return policyModule, nil
	}
	f, err := regularfile.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var magic [2]byte
	if _, err := io.ReadFull(f, magic[:]); err != nil || magic != [2]byte{0x1f, 0x8b} {
		if strings.HasSuffix(path, ".tar.gz") || strings.HasSuffix(path, ".tgz") {
			return 0, fmt.Errorf("%s is not a bundle: its content is not gzip'd (opa build writes bundles as .tar.gz)", path)
		}
		return 0, fmt.Errorf("%s is neither a directory, a .rego file nor a bundle (a .tar.gz file)", path)
	}
	return policyBundle, nil
}

// readPolicies reads the policy set that decide, check and test work on:
// path (a directory, a .rego file or a bundle file), else the
// configuration's policy.dir or policy.bundle_file. There is no silent
// default: without either it is a usage error, so that `verdict check` in
// the wrong directory cannot pass on policies it never read. A bundle is
// verified when the configuration names a verification key; the
// configuration's size limits apply. Unless followLinks, a symbolic link
// out of the directory, or a named file that is a link, is refused: these
// commands run on trees someone else wrote (a pull request's), where such
// a link makes any file the runner can read part of the policy.
func readPolicies(path string, cfg *config.Config, followLinks bool) (*bundles.Snapshot, error) {
	if cfg == nil {
		cfg = &config.Config{}
	}
	if path == "" {
		switch {
		case cfg.Policy.Dir != "":
			path = cfg.Path(cfg.Policy.Dir)
		case cfg.Policy.BundleFile != "":
			path = cfg.Path(cfg.Policy.BundleFile)
		case cfg.Policy.BundleURL != "":
			return nil, usageError("policy.bundle_url: fetch the bundle and pass its file")
		default:
			return nil, usageError("name the policies: a directory (. for this one), a .rego file or a bundle file")
		}
	}
	kind, err := kindOf(path)
	if err != nil {
		return nil, usageError("%v", err)
	}
	if !followLinks {
		if stepsBack(path) {
			return nil, usageError("%s steps back through a directory (..): name the policies without it, or pass --follow-links", path)
		}
		if link := linkInPath(path); link != "" {
			return nil, usageError("%s is a symbolic link: name what it points to, or pass --follow-links", link)
		}
	}
	switch kind {
	case policyModule:
		raw, err := regularfile.ReadFile(path)
		if err != nil {
			return nil, usageError("%v", err)
		}
		s := &bundles.Snapshot{Origin: "file:" + path, Data: map[string]any{},
			Modules: []bundles.Module{{Path: filepath.Base(path), Raw: raw}}}
		s.Revision = bundles.ContentHash(s)
		displayFrom(s, filepath.Dir(path))
		return s, nil
	case policyBundle:
		verify, err := bundleVerification(cfg, filewatch.New(filewatch.Options{}))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
		}
		f, err := regularfile.Open(path)
		if err != nil {
			return nil, usageError("%v", err)
		}
		defer f.Close()
		opts, err := verify.Tarball(bundles.TarballOptions{Origin: "bundle:" + path, Limits: policyLimits(cfg)})
		if err != nil {
			return nil, err
		}
		return bundles.ReadTarball(f, opts)
	}
	snap, err := bundles.ReadDir(path, bundles.ReadOptions{Limits: policyLimits(cfg), NoLinksOut: !followLinks})
	if le := (*bundles.LinkOutError)(nil); errors.As(err, &le) {
		return nil, usageError("%s is a link out of the policy directory: pass --follow-links to read it", filepath.Join(path, filepath.FromSlash(le.Path)))
	}
	if err != nil {
		return nil, problemsFrom(err, path)
	}
	displayFrom(snap, path)
	return snap, nil
}

// problemsFrom is err with its located problems named from root, as
// displayFrom names modules.
func problemsFrom(err error, root string) error {
	ps := bundles.Problems(err)
	if len(ps) == 0 {
		return err
	}
	for i := range ps {
		ps[i].File = displayPath(root, ps[i].File)
	}
	return &rebasedProblems{error: err, problems: ps}
}

// rebasedProblems carries problems renamed by problemsFrom.
type rebasedProblems struct {
	error
	problems []bundles.Problem
}

func (e *rebasedProblems) PolicyProblems() []bundles.Problem { return e.problems }
func (e *rebasedProblems) Unwrap() error                     { return e.error }

// displayFrom names snap's modules as the command line reaches them, from
// root (the directory read, or a file's): problems, test results, coverage
// and explanations then name files an editor or a CI annotation opens from
// the working directory (policies/authz/rbac.rego:4:1, not authz/rbac.rego),
// as opa names them. The revision stays the one the tree's own names give,
// the revision a server reading the same tree reports.
func displayFrom(snap *bundles.Snapshot, root string) {
	for i := range snap.Modules {
		snap.Modules[i].Path = displayPath(root, snap.Modules[i].Path)
	}
}

// displayPath is name (a snapshot's, slash-separated) reached from root.
// A name that would begin with "verdict:", which module names may not (the
// engine's own modules do), begins with "./" instead.
func displayPath(root, name string) string {
	if name == "" {
		return name
	}
	p := path.Join(filepath.ToSlash(root), name)
	if strings.HasPrefix(p, "verdict:") {
		p = "./" + p
	}
	return p
}

// linkInPath returns the part of path that is a symbolic link, or "": for
// a relative path every part from the working directory down (a tree's
// policies/ made a link to .. would take the read, and what counts as
// inside, out of the tree); for an absolute one below the working
// directory ($GITHUB_WORKSPACE/policies in CI) every part below it too,
// and for any other absolute one the named file or directory itself (the
// system's own links above it are not the tree's).
func linkInPath(path string) string {
	path = filepath.Clean(path)
	parts := []string{path}
	if !filepath.IsAbs(path) {
		parts = parts[:0]
		for p := path; p != "." && p != ".." && !strings.HasSuffix(p, string(filepath.Separator)+".."); p = filepath.Dir(p) {
			parts = append(parts, p)
		}
	} else if wd, err := os.Getwd(); err == nil {
		wd = filepath.Clean(wd)
		if rel, err := filepath.Rel(wd, path); err == nil && rel != "." && filepath.IsLocal(rel) {
			parts = parts[:0]
			for p := path; p != wd && p != filepath.Dir(p); p = filepath.Dir(p) {
				parts = append(parts, p)
			}
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		if info, err := os.Lstat(parts[i]); err == nil && info.Mode()&fs.ModeSymlink != 0 {
			return parts[i]
		}
	}
	return ""
}

// stepsBack reports whether path has a ".." after a name (inner/..): the
// kernel steps back through that name as it resolves it, through a link
// out of the tree, where the text (and filepath.Clean) reads it away.
func stepsBack(path string) bool {
	seenName := false
	for _, part := range strings.Split(filepath.ToSlash(path), "/") {
		switch part {
		case "..":
			if seenName {
				return true
			}
		case "", ".":
		default:
			seenName = true
		}
	}
	return false
}

// addAllowNet registers --allow-net: without it, the policies a command
// evaluates may not call a built-in function that reaches the network
// (authz.Options.NoNetwork), since they may be someone else's.
func addAllowNet(fl *pflag.FlagSet, v *bool) {
	fl.BoolVar(v, "allow-net", false, "let the policies call http.send, net.lookup_ip_addr, json.match_schema and json.verify_schema (refused by default: a policy someone else wrote could reach your network or send it your data)")
}

// addFollowLinks registers --follow-links, readPolicies' followLinks.
func addFollowLinks(fl *pflag.FlagSet, v *bool) {
	fl.BoolVar(v, "follow-links", false, "follow symbolic links out of the policy directory (refused by default: in a tree someone else wrote, such a link can read any file)")
}

// policyError is the exit of check and test for a policy set that cannot
// be used: its located problems, one "file:line:col: code: message" line
// each, and exit status 1 (the policy is wrong, not the command line); an
// error without locations (a missing file) is an error, exit status 2.
func policyError(err error) error { return problemsExit(err, exitDeny) }

// loadError is policyError for decide and replay, whose exit status 1 is an
// answer (a deny, a decision that flips): a policy set that does not load
// is an error there, exit status 2, so that a script cannot take it for a
// deny.
func loadError(err error) error { return problemsExit(err, exitError) }

// problemsExit is err's located problems with exit status code, or err
// with exit status 2 when it has none. A policy set without the entrypoint
// package is an error with exit status code that suggests --entrypoint
// for the packages it declares.
func problemsExit(err error, code int) error {
	if ee := (*authz.EntrypointError)(nil); errors.As(err, &ee) {
		switch len(ee.Packages) {
		case 0:
			return &exitCode{code: code, err: ee}
		case 1:
			return &exitCode{code: code, err: fmt.Errorf("%w: pass --entrypoint %s", ee, ee.Packages[0])}
		}
		return &exitCode{code: code, err: fmt.Errorf("%w: pass --entrypoint and one of them", ee)}
	}
	if ps := bundles.Problems(err); len(ps) > 0 {
		ec := &exitCode{code: code, problems: ps}
		if slices.ContainsFunc(ps, func(p bundles.Problem) bool { return p.Code == "verdict_network_error" }) {
			ec.err = errors.New("policies may not reach the network here: pass --allow-net to let them")
		}
		return ec
	}
	var ec *exitCode
	if errors.As(err, &ec) {
		return err
	}
	return &exitCode{code: exitError, err: err}
}
