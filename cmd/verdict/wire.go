package main

import (
	"bytes"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/bundles/local"
	"github.com/verdict-pdp/verdict/bundles/remote"
	"github.com/verdict-pdp/verdict/internal/filewatch"
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
	e.ForgetKeys(issuer, kids)
}

// tokenOptions loads every issuer's keys and returns the verifier options.
// Keys in files (jwks_file, public_key_file, hmac_secret_file) are read
// now and added to files, which keeps them in service when it runs: a
// rotated file replaces the issuer's keys, and onRemoved hears of the keys
// that left. A key in an environment variable is read once, now. A
// jwks_url or discovery issuer gets a jwks.Manager as its KeySet, returned
// in managers: nothing is fetched yet, and the caller must Run every
// manager (they serve keys only then); onRemoved, when set, hears of their
// removals too.
func tokenOptions(cfg *config.Config, logger *slog.Logger, files *filewatch.Watcher, onRemoved func(issuer string, kids []string)) (token.Options, []*jwks.Manager, error) {
	opts := token.Options{Leeway: cfg.Tokens.Leeway, MaxBytes: int(cfg.Tokens.MaxBytes), CallerAudiences: cfg.Callers.TokenAudiences}
	var managers []*jwks.Manager
	persist := cacheDir(cfg, cfg.Tokens.JWKSPersistDir, "jwks")
	for i, is := range cfg.Tokens.Issuers {
		keys, err := issuerKeys(cfg, i, is, persist, logger, files, onRemoved)
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

// issuerKeys builds the KeySet of issuer i from its key source.
func issuerKeys(cfg *config.Config, i int, is config.Issuer, persist string, logger *slog.Logger, files *filewatch.Watcher, onRemoved func(string, []string)) (token.KeySet, error) {
	switch {
	case is.JWKSFile != "":
		return keyFile(cfg, i, is, "jwks_file", is.JWKSFile, files, logger, onRemoved, func(data []byte) ([]token.Key, bool, error) {
			keys, skipped, err := token.ParseJWKSLenient(data)
			if err != nil {
				return nil, false, err
			}
			return keys, true, errors.Join(skipped...)
		})
	case is.PublicKeyFile != "":
		return keyFile(cfg, i, is, "public_key_file", is.PublicKeyFile, files, logger, onRemoved, func(data []byte) ([]token.Key, bool, error) {
			k, err := token.ParsePublicKeyPEM(data)
			if err != nil {
				// Whole when it holds a complete PEM block (a key too weak,
				// or a private key): that key then replaces the old one,
				// which is revoked, though the new one is refused.
				block, _ := pem.Decode(data)
				return nil, block != nil, err
			}
			return []token.Key{k}, true, nil
		})
	case is.HMACSecretFile != "":
		return keyFile(cfg, i, is, "hmac_secret_file", is.HMACSecretFile, files, logger, onRemoved, func(data []byte) ([]token.Key, bool, error) {
			secret, err := trimSecret(data)
			if err != nil {
				return nil, false, errors.New("the secret is empty")
			}
			// A secret has no end to tell a half-written one by: one that
			// is refused (too short) is never taken as whole, and the
			// secret in service stays until a good one replaces it.
			k := token.HMACKey(secret)
			if err := token.CheckKeys([]token.Key{k}, is.Algorithms); err != nil {
				return nil, false, err
			}
			return []token.Key{k}, true, nil
		})
	case is.HMACSecretEnv != "":
		secret, err := readSecret(cfg, "hmac_secret_env", "", is.HMACSecretEnv)
		if err != nil {
			return nil, err
		}
		return token.StaticKeys{token.HMACKey(secret)}, nil
	case is.JWKSURL != "", is.Discovery:
		roots, err := caFile(cfg, fmt.Sprintf("tokens.issuers[%d].ca_file", i), is.CAFile, files)
		if err != nil {
			if inner := errors.Unwrap(err); inner != nil {
				err = inner // the set's name restates what the caller says
			}
			return nil, fmt.Errorf("ca_file: %w", err)
		}
		return jwks.New(jwks.Options{
			Issuer:        is.Issuer,
			URL:           is.JWKSURL,
			Discovery:     is.Discovery,
			RootCAs:       roots,
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
// environment variable env (see trimSecret).
func readSecret(cfg *config.Config, key, file, env string) ([]byte, error) {
	if file != "" {
		data, err := regularfile.ReadFileMax(cfg.Path(file), maxSecretFile)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", key, err)
		}
		secret, err := trimSecret(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %s %w", key, file, err)
		}
		return secret, nil
	}
	v, ok := os.LookupEnv(env)
	if !ok {
		return nil, fmt.Errorf("%s: environment variable %s is not set", key, env)
	}
	secret, err := trimSecret([]byte(v))
	if err != nil {
		return nil, fmt.Errorf("%s: environment variable %s %w", key, env, err)
	}
	return secret, nil
}

// maxSecretFile bounds a secret file (decision_log.hash_key_file): a key,
// not a document.
const maxSecretFile = 64 << 10

// trimSecret returns a secret without its trailing line break, which is
// not the secret's (a Kubernetes secret mounted as a file or a variable
// often ends with one). An empty secret is an error.
func trimSecret(data []byte) ([]byte, error) {
	secret := bytes.TrimRight(data, "\r\n")
	if len(secret) == 0 {
		return nil, errors.New("is empty")
	}
	return secret, nil
}

// bundleVerification reads policy.verification_key_file (nil without one:
// bundles are then not verified) and adds it to files: a rotated key file
// verifies every bundle read after it. One that is refused adds nothing;
// a whole one (see VerifyOptions.Retain: not empty, not cut short, not a
// shared secret) still revokes the keys it no longer holds (a compromised
// key removed beside a mistake is removed all the same), and with none
// left every bundle is refused until a good file comes (the policy serving
// stays). Without Run on files (one-shot commands), the file is read once.
func bundleVerification(cfg *config.Config, files *filewatch.Watcher) (bundles.Verification, error) {
	file := cfg.Policy.VerificationKeyFile
	if file == "" {
		return nil, nil
	}
	type keys struct {
		opts bundles.VerifyOptions
		err  error // every key revoked
	}
	var inService atomic.Pointer[keys]
	err := files.Add(filewatch.Set{Name: "policy.verification_key_file", Paths: []string{cfg.Path(file)},
		Apply: func(contents [][]byte) error {
			v := bundles.VerifyOptions{Key: contents[0], Algorithm: cfg.Policy.VerificationAlgorithm}
			var err error
			if len(bytes.TrimSpace(contents[0])) == 0 {
				// An empty key would mean no verification: never silently.
				err = fmt.Errorf("%s is empty", file)
			} else if err = v.Validate(); err == nil {
				inService.Store(&keys{opts: v})
				return nil
			} else {
				err = fmt.Errorf("%s: %w", file, err)
			}
			if cur := inService.Load(); cur != nil && cur.err == nil {
				if kept, ok := cur.opts.Retain(contents[0]); ok {
					inService.Store(&keys{opts: kept})
				} else {
					inService.Store(&keys{err: fmt.Errorf("no bundle verification key in service: policy.verification_key_file %w", err)})
				}
			}
			return err
		}})
	if err != nil {
		return nil, err
	}
	return func() (bundles.VerifyOptions, error) {
		k := inService.Load()
		return k.opts, k.err
	}, nil
}

// policySource picks what serve watches: path (--policies: a directory or
// a bundle file), else the configuration's dir, bundle_file or bundle_url,
// else nothing (ok false: without a configuration file, serve then serves
// the embedded default policies; with one, it refuses to start).
// Bundles are verified with verify (see bundleVerification).
func policySource(cfg *config.Config, path string, verify bundles.Verification, logger *slog.Logger, observer bundles.Observer) (src serveSource, ok bool, err error) {
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
		case verify != nil:
			// Never silently unverified.
			return nil, false, usageError("--policies %s: a directory carries no signature, and policy.verification_key_file says policies must be signed: give a signed bundle file", path)
		default:
			dir, bundleFile = path, ""
		}
	}
	if dir != "" && path == "" {
		// Found before the server binds, as every other configuration
		// error is: the watch would fail only once it serves.
		if info, err := os.Stat(dir); err != nil || !info.IsDir() {
			why := "not a directory"
			if err != nil {
				why = err.Error()
			}
			return nil, false, fmt.Errorf("%w: %s: policy.dir: %s", config.ErrInvalid, cfg.File, why)
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
				// A regular file, read up to the bound: a FIFO in its place
				// (or /dev/zero) would stop the uploader or the poller for
				// good, waiting for a writer or filling memory.
				b, err := regularfile.ReadFileMax(cfg.Path(v.File), maxHeaderFile)
				switch {
				case errors.Is(err, regularfile.ErrTooLarge):
					return nil, fmt.Errorf("%s.%s: %s is over %d bytes", key, name, v.File, maxHeaderFile)
				case err != nil:
					return nil, fmt.Errorf("%s.%s: %w", key, name, err)
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
func shadowPolicy(cfg *config.Config, verify bundles.Verification, dlog server.DecisionLog, logger *slog.Logger) (*server.Shadow, *authz.Engine, serveSource, error) {
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
	src, _, err := policySource(&shadowCfg, "", verify, shadowLog, nil)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("policy.shadow: %w", err)
	}
	shOpts := shadowOptions(sc)
	shOpts.Engine, shOpts.Source, shOpts.DecisionLog, shOpts.Logger = engine, src, dlog, shadowLog
	sh, err := server.NewShadow(shOpts)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("policy.shadow: %w", err)
	}
	return sh, engine, src, nil
}

// shadowOptions is what policy.shadow says of sampling and queueing.
func shadowOptions(sc *config.Shadow) server.ShadowOptions {
	o := server.ShadowOptions{Queue: sc.Queue, MaxQueueBytes: int64(sc.MaxQueueBytes)}
	if sc.Sample != nil {
		o.Sample = *sc.Sample
	}
	return o
}

// usageError is an error in how verdict was called: exit status 2.
func usageError(format string, args ...any) error {
	return &exitCode{code: exitError, err: fmt.Errorf(format, args...)}
}

// engineOptions is the engine the configuration describes, before token
// issuers and logging: the entrypoint and evaluator, limits.eval_timeout
// and eval_heap_limit, the cache bounds (zero: authz's defaults) and
// policy.require_tests. serve, decide and the shadow policy all start
// from it.
func engineOptions(cfg *config.Config) authz.Options {
	return authz.Options{
		Entrypoint:         cfg.Policy.Entrypoint,
		Evaluator:          authz.Evaluator(cfg.Policy.Evaluator),
		EvalTimeout:        cfg.Limits.EvalTimeout,
		EvalHeapLimit:      evalHeapLimit(cfg.Limits.EvalHeapLimit, debug.SetMemoryLimit(-1)),
		TokenCacheBytes:    int(cfg.Limits.TokenCacheBytes),
		DecisionCacheBytes: int(cfg.Limits.DecisionCacheBytes),
		RequireTests:       cfg.Policy.RequireTests,
	}
}

// evalHeapLimit is limits.eval_heap_limit: configured, or half the Go
// runtime's soft memory limit (math.MaxInt64 when there is none: then no
// heap limit).
func evalHeapLimit(configured config.ByteSize, memoryLimit int64) int64 {
	switch {
	case configured > 0:
		return int64(configured)
	case memoryLimit < math.MaxInt64:
		return memoryLimit / 2
	}
	return 0
}

// decisionLog opens the decision log: decision_log.output is "stdout" (the
// default), "off", or a file path (appended to); decision_log.upload ships
// the same records to a collector too; mask, hash and max_record_bytes
// shape them. flushBy is when, at the latest, the records still buffered
// for the collector must have been sent once the log is stopped (the end
// of the shutdown budget). No log (nil) when output is off without upload.
// The returned file is the log's file, nil when it has none: the caller
// closes it, and reopens it on SIGHUP.
func decisionLog(cfg *config.Config, stdout io.Writer, files *filewatch.Watcher, logger *slog.Logger, flushBy func() time.Time) (*decisionlog.Logger, *logFile, error) {
	dl := cfg.DecisionLog
	var w io.Writer
	var file *logFile
	switch dl.Output {
	case "off":
		if dl.Upload == nil {
			return nil, nil, nil
		}
	case "", "stdout":
		w = stdout
	default:
		var err error
		if file, err = openLogFile(cfg.Path(dl.Output)); err != nil {
			return nil, nil, fmt.Errorf("decision_log: %w", err)
		}
		w = file
	}
	opts := decisionlog.Options{Writer: w, Logger: logger, FlushDeadline: flushBy,
		Mask: dl.Mask, Hash: dl.Hash, MaxRecordBytes: int(dl.MaxRecordBytes),
		Buffer: dl.MaxQueueRecords, MaxQueueBytes: int64(dl.MaxQueueBytes), MaxRecordsPerSecond: dl.MaxRecordsPerSecond}
	if dl.HashKeyFile != "" || dl.HashKeyEnv != "" {
		key := "decision_log.hash_key_file"
		if dl.HashKeyEnv != "" {
			key = "decision_log.hash_key_env"
		}
		secret, err := readSecret(cfg, key, dl.HashKeyFile, dl.HashKeyEnv)
		if err != nil {
			file.Close()
			return nil, nil, err
		}
		opts.HashKey = secret
	}
	if up := dl.Upload; up != nil {
		roots, err := caFile(cfg, "decision_log.upload.ca_file", up.CAFile, files)
		if err != nil {
			file.Close()
			return nil, nil, fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
		}
		opts.Upload = &decisionlog.UploadOptions{URL: up.URL, Interval: up.Interval,
			MaxBatchRecords: up.MaxBatchRecords, MaxBatchBytes: int(up.MaxBatchBytes),
			MaxBufferRecords: up.MaxBufferRecords, MaxBufferBytes: int(up.MaxBufferBytes),
			Timeout: up.Timeout, MaxAttempts: up.MaxAttempts, RootCAs: roots,
			HeaderFunc: headerFunc(cfg, "decision_log.upload.headers", up.Headers)}
	}
	l, err := decisionlog.New(opts)
	if err != nil {
		file.Close()
		return nil, nil, fmt.Errorf("decision_log: %w", err)
	}
	return l, file, nil
}
