package main

import (
	"io/fs"
	"slices"

	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"

	"golang.org/x/net/http/httpguts"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/local"
	"github.com/verdict-pdp/verdict/bundles/remote"
	"github.com/verdict-pdp/verdict/internal/regularfile"
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
	"github.com/verdict-pdp/verdict/server/decisionlog"
)

// This file is the one place where a configuration (a declarative value:
// server/config reads and validates it and does nothing else) becomes the
// parts every subcommand runs: token issuers and their key sets, policy
// sets and sources, cache directories. serve, decide, check and test all
// come here, so a key means the same in each.

// cacheDir resolves a persist-directory setting (tokens.jwks_persist_dir,
// policy.persist_dir): "off" disables persisting, "" means name under the
// user cache directory (verdict/name), anything else is a path relative to
// the configuration file.
func cacheDir(cfg *config.Config, setting, name string) string {
	switch setting {
	case "off":
		return ""
	case "":
		if dir, err := os.UserCacheDir(); err == nil {
			return filepath.Join(dir, "verdict", name)
		}
		return ""
	}
	return cfg.Path(setting)
}

// keyForgetter hands key removals from the key managers to the engine. The
// managers are built before the engine (the engine's verifier holds them),
// so the engine is attached once it exists; removals before that have
// nothing cached to forget. Safe for concurrent use.
type keyForgetter struct{ engine atomic.Pointer[authz.Engine] }

func (k *keyForgetter) attach(e *authz.Engine) { k.engine.Store(e) }

// forget is a jwks OnKeysRemoved callback.
func (k *keyForgetter) forget(issuer string, kids []string) {
	e := k.engine.Load()
	if e == nil {
		return
	}
	for _, kid := range kids {
		e.ForgetKey(issuer, kid)
	}
}

// tokenOptions loads every issuer's keys and returns the verifier options.
// Keys from files and environment variables are read once, now. A jwks_url
// or discovery issuer gets a jwks.Manager as its KeySet, returned in
// managers: nothing is fetched yet, and the caller must Run every manager
// (they serve keys only then). onRemoved, when set, is told when a key
// leaves an issuer's set.
func tokenOptions(cfg *config.Config, logger *slog.Logger, onRemoved func(issuer string, kids []string)) (token.Options, []*jwks.Manager, error) {
	opts := token.Options{Leeway: cfg.Tokens.Leeway, MaxBytes: cfg.Tokens.MaxBytes, CallerAudiences: cfg.Callers.TokenAudiences}
	var managers []*jwks.Manager
	persist := cacheDir(cfg, cfg.Tokens.JWKSPersistDir, "jwks")
	for i, is := range cfg.Tokens.Issuers {
		keys, err := issuerKeys(cfg, is, persist, logger, onRemoved)
		if err != nil {
			return token.Options{}, nil, fmt.Errorf("%w: %s: tokens.issuers[%d] (issuer %q): %w", config.ErrInvalid, cfg.File, i, is.Issuer, err)
		}
		if m, ok := keys.(*jwks.Manager); ok {
			managers = append(managers, m)
		}
		opts.Issuers = append(opts.Issuers, token.Issuer{
			Issuer:       is.Issuer,
			Audiences:    is.Audiences,
			Algorithms:   is.Algorithms,
			Keys:         keys,
			ExpOptional:  is.ExpOptional,
			MaxLifetime:  is.MaxLifetime,
			RequiredType: is.RequiredTyp,
		})
	}
	return opts, managers, nil
}

// issuerKeys builds one issuer's KeySet from its key source.
func issuerKeys(cfg *config.Config, is config.Issuer, persist string, logger *slog.Logger, onRemoved func(string, []string)) (token.KeySet, error) {
	switch {
	case is.JWKSFile != "":
		return keysFromFile(cfg, "jwks_file", is.JWKSFile, token.ParseJWKS)
	case is.PublicKeyFile != "":
		return keysFromFile(cfg, "public_key_file", is.PublicKeyFile, func(data []byte) ([]token.Key, error) {
			k, err := token.ParsePublicKeyPEM(data)
			return []token.Key{k}, err
		})
	case is.HMACSecretFile != "", is.HMACSecretEnv != "":
		key := "hmac_secret_file"
		if is.HMACSecretEnv != "" {
			key = "hmac_secret_env"
		}
		secret, err := readSecret(cfg, key, is.HMACSecretFile, is.HMACSecretEnv)
		if err != nil {
			return nil, err
		}
		return token.StaticKeys{token.HMACKey(secret)}, nil
	case is.JWKSURL != "", is.Discovery:
		return jwks.New(jwks.Options{
			Issuer:        is.Issuer,
			URL:           is.JWKSURL,
			Discovery:     is.Discovery,
			CAFile:        cfg.Path(is.CAFile),
			MinRefresh:    is.MinRefresh,
			MaxRefresh:    is.MaxRefresh,
			MaxStale:      is.MaxStale,
			PersistDir:    persist,
			OnKeysRemoved: onRemoved,
			Logger:        logger,
		})
	}
	return nil, fmt.Errorf("no key source")
}

// readSecret reads the secret that the configuration key names: the file
// (relative to the configuration's directory) when file is set, else the
// environment variable env. A trailing line break is not part of it: a
// Kubernetes secret mounted as a file or a variable often ends with one
// that is not the secret's. An empty secret is an error.
func readSecret(cfg *config.Config, key, file, env string) ([]byte, error) {
	var secret string
	if file != "" {
		data, err := os.ReadFile(cfg.Path(file))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		secret = string(data)
	} else {
		v, ok := os.LookupEnv(env)
		if !ok {
			return nil, fmt.Errorf("%s: environment variable %s is not set", key, env)
		}
		secret = v
	}
	secret = strings.TrimRight(secret, "\r\n")
	if secret == "" {
		if file != "" {
			return nil, fmt.Errorf("%s: %s is empty", key, file)
		}
		return nil, fmt.Errorf("%s: environment variable %s is empty", key, env)
	}
	return []byte(secret), nil
}

// keysFromFile reads the file that the configuration key names (relative
// to the configuration's directory) and parses it into static keys. Its
// errors name the key, and the file too when it does not parse.
func keysFromFile(cfg *config.Config, key, file string, parse func([]byte) ([]token.Key, error)) (token.KeySet, error) {
	data, err := os.ReadFile(cfg.Path(file))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	keys, err := parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", key, file, err)
	}
	return token.StaticKeys(keys), nil
}

// bundleVerification reads the configuration's bundle signing key; no key
// configured means bundles are not verified.
func bundleVerification(cfg *config.Config) (bundles.VerifyOptions, error) {
	if cfg.Policy.VerificationKeyFile == "" {
		return bundles.VerifyOptions{}, nil
	}
	key, err := os.ReadFile(cfg.Path(cfg.Policy.VerificationKeyFile))
	if err != nil {
		return bundles.VerifyOptions{}, fmt.Errorf("policy.verification_key_file: %w", err)
	}
	if len(bytes.TrimSpace(key)) == 0 {
		// An empty key would mean no verification: never silently.
		return bundles.VerifyOptions{}, fmt.Errorf("policy.verification_key_file: %s is empty", cfg.Policy.VerificationKeyFile)
	}
	v := bundles.VerifyOptions{Key: key, Algorithm: cfg.Policy.VerificationAlgorithm}
	if _, err := v.Config(); err != nil {
		return bundles.VerifyOptions{}, fmt.Errorf("policy.verification_key_file: %w", err)
	}
	return v, nil
}

// policyLimits is the configuration's bound on reading a policy set
// (policy.max_unpacked_bytes, policy.max_files); a file's own size is left
// to bundles.DefaultMaxFileBytes.
func policyLimits(cfg *config.Config) bundles.Limits {
	return bundles.Limits{MaxUnpackedBytes: cfg.Policy.MaxUnpackedBytes, MaxFiles: cfg.Policy.MaxFiles}
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
		return s, nil
	case policyBundle:
		verify, err := bundleVerification(cfg)
		if err != nil {
			return nil, err
		}
		f, err := regularfile.Open(path)
		if err != nil {
			return nil, usageError("%v", err)
		}
		defer f.Close()
		return bundles.ReadTarball(f, bundles.TarballOptions{Origin: "bundle:" + path, Verify: verify,
			Limits: policyLimits(cfg)})
	}
	snap, err := bundles.ReadDir(path, bundles.ReadOptions{Limits: policyLimits(cfg), NoLinksOut: !followLinks})
	if le := (*bundles.LinkOutError)(nil); errors.As(err, &le) {
		return nil, usageError("%s is a link out of the policy directory: pass --follow-links to read it", filepath.Join(path, filepath.FromSlash(le.Path)))
	}
	return snap, err
}

// linkInPath returns the part of path that is a symbolic link, or "": for
// a relative path every part from the working directory down (a tree's
// policies/ made a link to .. would take the read, and what counts as
// inside, out of the tree), for an absolute one the named file or
// directory itself (the system's own links above it are not the tree's).
func linkInPath(path string) string {
	path = filepath.Clean(path)
	parts := []string{path}
	if !filepath.IsAbs(path) {
		parts = parts[:0]
		for p := path; p != "." && p != ".." && !strings.HasSuffix(p, string(filepath.Separator)+".."); p = filepath.Dir(p) {
			parts = append(parts, p)
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
	fl.BoolVar(v, "allow-net", false, "let the policies call http.send and net.lookup_ip_addr (refused by default: a policy someone else wrote could reach your network or send it your data)")
}

// addFollowLinks registers --follow-links, readPolicies' followLinks.
func addFollowLinks(fl *pflag.FlagSet, v *bool) {
	fl.BoolVar(v, "follow-links", false, "follow symbolic links out of the policy directory (refused by default: in a tree someone else wrote, such a link can read any file)")
}

// policySource picks what serve watches: path (--policies: a directory or
// a bundle file), else the configuration's dir, bundle_file or bundle_url,
// else nothing (ok false: serve then serves the embedded default policies).
func policySource(cfg *config.Config, path string, logger *slog.Logger, observer bundles.Observer) (src serveSource, ok bool, err error) {
	verify, err := bundleVerification(cfg)
	if err != nil {
		return nil, false, err
	}
	limits := policyLimits(cfg)
	dir, bundleFile := cfg.Path(cfg.Policy.Dir), cfg.Path(cfg.Policy.BundleFile)
	if path != "" {
		kind, err := kindOf(path)
		switch {
		case err != nil:
			return nil, false, usageError("--policies: %v", err)
		case kind == policyModule:
			return nil, false, usageError("--policies %s: serve watches a directory or a bundle file; give the directory", path)
		case kind == policyBundle:
			dir, bundleFile = "", path
		default:
			dir, bundleFile = path, ""
		}
	}
	switch {
	case dir != "":
		s, err := local.NewDir(local.DirOptions{Dir: dir, Logger: logger, Observer: observer, Limits: limits})
		return s, err == nil, err
	case bundleFile != "":
		s, err := local.NewFile(local.FileOptions{Path: bundleFile, Verify: verify, Logger: logger, Observer: observer,
			Limits: limits})
		return s, err == nil, err
	case cfg.Policy.BundleURL != "":
		s, err := remote.New(remote.Options{URL: cfg.Policy.BundleURL, Interval: cfg.Policy.PollInterval, HeaderFunc: headerFunc(cfg, "policy.bundle_headers", cfg.Policy.BundleHeaders),
			Verify: verify, PersistDir: cacheDir(cfg, cfg.Policy.PersistDir, "bundles"), MaxAge: cfg.Policy.MaxAge,
			Logger: logger, Observer: observer, Limits: limits})
		return s, err == nil, err
	}
	return nil, false, nil
}

// maxHeaderFile bounds a header file (policy.bundle_headers,
// decision_log.upload.headers).
const maxHeaderFile = 16 << 10

// headerFunc turns configured request headers (policy.bundle_headers,
// decision_log.upload.headers: key) into a HeaderFunc (nil for none):
// string values as configured (${NAME} already expanded), file values read
// for every request, so that a rotated credential is used from the next
// request on. Its errors name the key and file, never a value.
func headerFunc(cfg *config.Config, key string, configured map[string]config.HeaderValue) func() (http.Header, error) {
	if len(configured) == 0 {
		return nil
	}
	headers := maps.Clone(configured)
	return func() (http.Header, error) {
		h := make(http.Header, len(headers))
		for name, v := range headers {
			value := v.Value
			if v.File != "" {
				b, err := os.ReadFile(cfg.Path(v.File))
				switch {
				case err != nil:
					return nil, fmt.Errorf("%s.%s: %w", key, name, err)
				case len(b) > maxHeaderFile:
					return nil, fmt.Errorf("%s.%s: %s is over %d bytes", key, name, v.File, maxHeaderFile)
				}
				value = v.Prefix + strings.TrimRight(string(b), "\r\n")
				if !httpguts.ValidHeaderFieldValue(value) {
					return nil, fmt.Errorf("%s.%s: %s holds a control character (more than one line?)", key, name, v.File)
				}
			}
			h.Set(name, value)
		}
		return h, nil
	}
}

// shadowPolicy builds what policy.shadow asks for: a candidate engine (the
// live policy's entrypoint and limits, no token issuers: it evaluates the
// input documents the live engine built), the source that loads it
// (policy.shadow's dir, bundle_file or bundle_url, read like the live
// policy's but never persisted), and the Shadow that compares the two and
// passes records on to dlog. The caller runs the source and the Shadow.
func shadowPolicy(cfg *config.Config, dlog server.DecisionLog, logger *slog.Logger) (*server.Shadow, *authz.Engine, serveSource, error) {
	sc := cfg.Policy.Shadow
	shadowLog := logger.With(slog.String("policy", "shadow"))
	opts := engineOptions(cfg)
	opts.Logger = shadowLog
	engine, err := authz.New(opts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("policy.shadow: %w", err)
	}
	shadowCfg := *cfg
	shadowCfg.Policy.Dir, shadowCfg.Policy.BundleFile, shadowCfg.Policy.BundleURL = sc.Dir, sc.BundleFile, sc.BundleURL
	shadowCfg.Policy.PersistDir, shadowCfg.Policy.MaxAge = "off", 0
	src, _, err := policySource(&shadowCfg, "", shadowLog, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("policy.shadow: %w", err)
	}
	shOpts := server.ShadowOptions{Engine: engine, Source: src, Queue: sc.Queue, DecisionLog: dlog, Logger: shadowLog}
	if sc.Sample != nil {
		shOpts.Sample = *sc.Sample
	}
	sh, err := server.NewShadow(shOpts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("policy.shadow: %w", err)
	}
	return sh, engine, src, nil
}

// usageError is an error in how verdict was called: exit status 2.
func usageError(format string, args ...any) error {
	return &exitCode{code: exitError, err: fmt.Errorf(format, args...)}
}

// engineOptions is the engine the configuration describes, before token
// issuers and logging: the entrypoint and evaluator, limits.eval_timeout,
// the cache bounds (zero: authz's defaults) and policy.require_tests.
// serve, decide and the shadow policy all start from it.
func engineOptions(cfg *config.Config) authz.Options {
	return authz.Options{
		Entrypoint:         cfg.Policy.Entrypoint,
		Evaluator:          authz.Evaluator(cfg.Policy.Evaluator),
		EvalTimeout:        cfg.Limits.EvalTimeout,
		TokenCacheBytes:    int(cfg.Limits.TokenCacheBytes),
		DecisionCacheBytes: int(cfg.Limits.DecisionCacheBytes),
		RequireTests:       cfg.Policy.RequireTests,
	}
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
// with exit status 2 when it has none.
func problemsExit(err error, code int) error {
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

// decisionLog opens the decision log: decision_log.output is "stdout" (the
// default), "off", or a file path (appended to); decision_log.upload ships
// the same records to a collector too; mask, hash and max_record_bytes
// shape them. flushBy is when, at the latest, the records still buffered
// for the collector must have been sent once the log is stopped (the end
// of the shutdown budget). No log (nil) when output is off without upload.
// The returned close function closes a file.
func decisionLog(cfg *config.Config, stdout io.Writer, logger *slog.Logger, flushBy func() time.Time) (*decisionlog.Logger, func(), error) {
	dl := cfg.DecisionLog
	var w io.Writer
	closeFn := func() {}
	switch dl.Output {
	case "off":
		if dl.Upload == nil {
			return nil, closeFn, nil
		}
	case "", "stdout":
		w = stdout
	default:
		file, err := os.OpenFile(cfg.Path(dl.Output), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err != nil {
			return nil, nil, fmt.Errorf("decision_log: %w", err)
		}
		w, closeFn = file, func() { file.Close() }
	}
	opts := decisionlog.Options{Writer: w, Logger: logger, FlushDeadline: flushBy,
		Mask: dl.Mask, Hash: dl.Hash, MaxRecordBytes: dl.MaxRecordBytes}
	if dl.HashKeyFile != "" || dl.HashKeyEnv != "" {
		key := "decision_log.hash_key_file"
		if dl.HashKeyEnv != "" {
			key = "decision_log.hash_key_env"
		}
		secret, err := readSecret(cfg, key, dl.HashKeyFile, dl.HashKeyEnv)
		if err != nil {
			closeFn()
			return nil, nil, err
		}
		opts.HashKey = secret
	}
	if up := dl.Upload; up != nil {
		opts.Upload = &decisionlog.UploadOptions{URL: up.URL, Interval: up.Interval,
			MaxBatchRecords: up.MaxBatchRecords, MaxBatchBytes: int(up.MaxBatchBytes),
			MaxBufferRecords: up.MaxBufferRecords, MaxBufferBytes: int(up.MaxBufferBytes),
			Timeout: up.Timeout, MaxAttempts: up.MaxAttempts, CAFile: cfg.Path(up.CAFile),
			HeaderFunc: headerFunc(cfg, "decision_log.upload.headers", up.Headers)}
	}
	l, err := decisionlog.New(opts)
	if err != nil {
		closeFn()
		return nil, nil, fmt.Errorf("decision_log: %w", err)
	}
	return l, closeFn, nil
}
