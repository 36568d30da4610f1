package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/bundles"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

type serveFlags struct {
	configFile string
	addr       string
	// diagnosticAddr overrides the configuration's diagnostic_addr.
	diagnosticAddr string
	policies       string
	// entrypoint overrides the configuration's policy.entrypoint.
	entrypoint string
	logFormat  string
	logLevel   string
}

func newServeCommand() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve [--config FILE] [--addr HOST:PORT] [--policies DIR]",
		Short: "Serve decisions over HTTP",
		Long: `Serve answers decisions over HTTP: POST /v1/decide, forward-auth on /v1/check,
health on /health/live and /health/ready, status on /v1/status and Prometheus
metrics on /metrics. Flags override the configuration file. With an ext_authz
block in the configuration it also serves Envoy's ext_authz API over gRPC
(envoy.service.auth.v3.Authorization/Check, and the gRPC health service).
With an authzen block it serves the AuthZEN 1.0 API: /access/v1/evaluation,
/access/v1/evaluations and /.well-known/authzen-configuration. With a tracing
block, or OTEL_EXPORTER_OTLP_ENDPOINT set, it exports OpenTelemetry traces
over OTLP/HTTP (OTEL_SDK_DISABLED=true turns them off).

The policy directory (--policies, or policy.dir) is watched and reloaded on
every change; a broken change keeps the last good policy serving.

Without --config, Verdict serves a demo: the embedded default policies (or
--policies), and tokens from a development issuer whose key is generated at
start and never stored. It prints ready-to-paste curl commands. Not for
production.

The first log line names the bound address ("listening addr=..."), so
--addr 127.0.0.1:0 picks a free port. SIGINT or SIGTERM shuts down gracefully
(in-flight requests finish, the decision log and batched spans are flushed)
and exits 0. SIGHUP reopens the decision log's file (rotate it by renaming
it, then send SIGHUP); policies, remote key sets, and key, certificate and
CA files reload on their own when they change.`,
		Example: `  verdict serve
  verdict serve --policies ./policies --addr 127.0.0.1:0
  verdict serve --policies ./policies/examples/authzen-todo --entrypoint todo
  verdict serve --config verdict.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := runServe(cmd.Context(), &f, cmd.OutOrStdout(), cmd.ErrOrStderr()); err != nil {
				return &exitCode{code: exitError, err: err}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configFile, "config", "", "configuration file (YAML)")
	fl.StringVar(&f.addr, "addr", "", `listen address (default: the configuration's addr, else "`+server.DefaultAddr+`")`)
	fl.StringVar(&f.diagnosticAddr, "diagnostic-addr", "", "plain-HTTP listen address for health, status and metrics, which then leave --addr (default: the configuration's diagnostic_addr, else none)")
	fl.StringVar(&f.policies, "policies", "", "policy directory or bundle file, watched for changes (default: the configuration's policy source; without --config, the embedded default policies)")
	fl.StringVar(&f.entrypoint, "entrypoint", "", `policy package that decides (default: the configuration's policy.entrypoint, else "authz")`)
	fl.StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	fl.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	return cmd
}

// initializer is a source that says when its first load attempt is done.
type initializer interface {
	Initialized() <-chan struct{}
}

// serveSource is a policy source with status, as the server reports it.
type serveSource interface {
	bundles.Source
	server.Source
	initializer
}

func runServe(ctx context.Context, f *serveFlags, stdout, stderr io.Writer) error {
	logger, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	memoryLimit := setMemoryLimit()
	// SIGHUP would end the server at once (no drain, no flushed decision
	// log). It reopens the decision log's file instead (a log rotated by
	// renaming it), from before the server listens; policies, key sets,
	// keys and certificates reload on their own.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	cfg := &config.Config{}
	if f.configFile != "" {
		if cfg, err = config.Load(f.configFile); err != nil {
			return err
		}
	}
	if f.entrypoint != "" {
		cfg.Policy.Entrypoint = f.entrypoint
	}

	// Tracing, when the configuration or the environment asks for it
	// (tracing.go); the spans still batched are flushed at the end.
	tr, err := newTracing(ctx, cfg, logger)
	if err != nil {
		return err
	}
	if tr != nil {
		defer tr.shutdown(ctx, cfg.Limits.ShutdownTimeout, logger)
	}

	// The engine: issuers from the configuration, or the development issuer.
	engineOpts := engineOptions(cfg)
	// The decision log records each decision's input, for replay; the
	// shadow policy evaluates it.
	engineOpts.KeepInput = cfg.DecisionLog.Enabled() || cfg.Policy.Shadow != nil
	engineOpts.Logger = logger
	// print() in a policy is for its author: it reaches the debug log.
	engineOpts.Print = func(ctx context.Context, loc, msg string) {
		logger.LogAttrs(ctx, slog.LevelDebug, "policy print", slog.String("location", loc), slog.String("message", msg))
	}
	var (
		minter   *devtoken.Minter
		managers []*jwks.Manager // remote key sets, run below
		engine   *authz.Engine
	)
	forgetter := &keyForgetter{}
	// Key files, the bundle verification key, the TLS certificate and
	// CAs, and the callers' trust bundle: read now, and taken up again
	// whenever one changes.
	credentials := filewatch.New(filewatch.Options{What: "credentials", Logger: logger})
	var devKeyFile string // the demo also trusts verdict token's key, when there is one
	var devKeyErr error   // why it does not, logged once the server listens
	if f.configFile == "" {
		if minter, err = devtoken.Generate(); err != nil {
			return err
		}
		engineOpts.Tokens = minter.TokenOptions()
		if stored, ok, err := devIssuer(""); err != nil {
			devKeyErr = err
		} else if ok {
			is := &engineOpts.Tokens.Issuers[0]
			is.Keys = append(slices.Clone(is.Keys.(token.StaticKeys)), stored.Issuers[0].Keys.(token.StaticKeys)...)
			devKeyFile, _ = devtoken.DefaultKeyPath()
		}
	} else if engineOpts.Tokens, managers, err = tokenOptions(cfg, logger, credentials, forgetter.forget); err != nil {
		return err
	}
	if tr != nil {
		engineOpts.TracerProvider = tr.provider
	}
	if engine, err = authz.New(engineOpts); err != nil {
		return err
	}
	// A key that leaves its issuer's set takes its cached verifications
	// with it.
	forgetter.attach(engine)
	reloads := server.NewReloadObserver()
	verify, err := bundleVerification(cfg, credentials)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
	}
	watched, ok, err := policySource(cfg, f.policies, verify, logger, reloads)
	if err != nil {
		return err
	}
	var src serveSource = watched
	// Never the demo's policies on a configuration's issuers: refused once
	// the rest of the configuration has been checked.
	noPolicies := !ok && cfg.File != ""
	if !ok && !noPolicies {
		if src, err = embeddedSource(); err != nil {
			return err
		}
	}

	// The server and its parts.
	opts := server.Options{
		Engine:            engine,
		KeySets:           keySets(managers),
		Addr:              cmp.Or(f.addr, cfg.Addr, server.DefaultAddr),
		DiagnosticAddr:    cmp.Or(f.diagnosticAddr, cfg.DiagnosticAddr),
		XFCCHeader:        cfg.Callers.XFCCHeader,
		EscapedCertHeader: cfg.Callers.EscapedCertHeader,
		ActionHeader:      cfg.ForwardAuth.ActionHeader,
		ClientAddrHeader:  cfg.ForwardAuth.ClientAddrHeader,
		Explain:           cfg.Explain,
		Build:             buildInfo(),
		Logger:            logger,
		Limits: server.Limits{
			MaxBodyBytes:           int64(cfg.Limits.MaxBodyBytes),
			MaxJSONDepth:           cfg.Limits.MaxJSONDepth,
			MaxHeaderBytes:         int(cfg.Limits.MaxHeaderBytes),
			ReadHeaderTimeout:      cfg.Limits.ReadHeaderTimeout,
			ReadTimeout:            cfg.Limits.ReadTimeout,
			WriteTimeout:           cfg.Limits.WriteTimeout,
			IdleTimeout:            cfg.Limits.IdleTimeout,
			ShutdownTimeout:        cfg.Limits.ShutdownTimeout,
			MaxConcurrentDecisions: cfg.Limits.MaxConcurrentDecisions,
			MaxConnections:         cfg.Limits.MaxConnections,
			MaxBodyBytesInFlight:   int64(cfg.Limits.MaxBodyBytesInFlight),
		},
	}
	if opts.DiagnosticAddr != "" && opts.DiagnosticAddr == opts.Addr && !strings.HasSuffix(opts.Addr, ":0") {
		return fmt.Errorf("diagnostic address %s: must differ from the listen address", opts.DiagnosticAddr)
	}
	if _, static := src.(*staticSource); !static {
		opts.Source = src
		opts.ReloadObserver = reloads
	}
	if opts.TLS, err = serverTLS(cfg, credentials); err != nil {
		return err
	}
	if opts.TrustedProxies, err = cfg.TrustedProxyPrefixes(); err != nil {
		return err
	}
	if cfg.ExtAuthz != nil {
		opts.ExtAuthz.Addr = cfg.ExtAuthz.GRPCAddr
		if opts.ExtAuthz.TrustedPeers, err = cfg.ExtAuthzPeerPrefixes(); err != nil {
			return err
		}
	}
	if opts.AuthZEN, err = authzenOptions(cfg); err != nil {
		return err
	}
	if opts.TrustBundle, err = trustBundle(cfg, credentials); err != nil {
		return err
	}
	opts.Credentials = credentials.Status
	// The shutdown budget (limits.shutdown_timeout) starts when the group
	// below is told to stop: the server drains within it, and the decision
	// log then has what is left to send its last batches to a collector.
	shutdownBy := sync.OnceValue(func() time.Time {
		return time.Now().Add(cmp.Or(cfg.Limits.ShutdownTimeout, server.DefaultShutdownTimeout))
	})
	dlog, logFile, err := decisionLog(cfg, stdout, credentials, logger, shutdownBy)
	if err != nil {
		return err
	}
	defer logFile.Close()
	if dlog != nil {
		opts.DecisionLog = dlog
	}
	var (
		shadowEngine *authz.Engine
		shadowSrc    serveSource
	)
	if cfg.Policy.Shadow != nil {
		if opts.Shadow, shadowEngine, shadowSrc, err = shadowPolicy(cfg, verify, opts.DecisionLog, logger); err != nil {
			return err
		}
	}
	if tr != nil {
		opts.TracerProvider = tr.provider
	}
	if noPolicies {
		return fmt.Errorf("%w: %s: no policies: set policy.dir, policy.bundle_file or policy.bundle_url, or give --policies "+
			"(the embedded default policies serve only the demo, without --config)", config.ErrInvalid, cfg.File)
	}
	srv, err := server.New(opts)
	if err != nil {
		return err
	}

	// Bind first: the first log line names the bound address.
	addr, err := srv.Listen()
	if err != nil {
		return err
	}
	if tr != nil {
		tr.logStart(ctx, logger)
	}
	if memoryLimit != nil {
		logger.LogAttrs(ctx, slog.LevelInfo, "memory limit", memoryLimit...)
	}
	if devKeyErr != nil {
		logger.Warn("development key not trusted", slog.String("error", devKeyErr.Error()))
	}
	if engineOpts.EvalHeapLimit > 0 {
		logger.LogAttrs(ctx, slog.LevelInfo, "eval heap limit", slog.Int64("bytes", engineOpts.EvalHeapLimit))
	}

	// Everything long-running, in one group. The decision log stops only
	// after the server has finished its in-flight requests (and the shadow
	// has passed on the decisions queued for it), so their decisions are
	// written too.
	g, gctx := errgroup.WithContext(ctx)
	context.AfterFunc(gctx, func() { shutdownBy() })
	g.Go(func() error {
		for {
			select {
			case <-gctx.Done():
				return nil
			case <-hup:
				if err := logFile.Reopen(); err != nil {
					logger.Error("decision log not reopened", slog.String("error", err.Error()))
					continue
				}
				reopened := "none (the decision log is not a file)"
				if logFile != nil {
					reopened = logFile.path
				}
				logger.Info("signal", slog.String("signal", "SIGHUP"), slog.String("reopened", reopened),
					slog.String("note", "policies, key sets, keys and certificates reload on their own"))
			}
		}
	})
	logCtx, stopLog := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLog()
	if dlog != nil {
		g.Go(func() error { return dlog.Run(logCtx) })
	}
	afterServer := stopLog
	if opts.Shadow != nil {
		shadowCtx, stopShadow := context.WithCancel(context.WithoutCancel(ctx))
		defer stopShadow()
		afterServer = stopShadow
		g.Go(func() error {
			defer stopLog()
			return opts.Shadow.Run(shadowCtx)
		})
		g.Go(func() error { return shadowSrc.Run(gctx, shadowEngine) })
	}
	g.Go(func() error {
		defer afterServer()
		return srv.Run(gctx)
	})
	g.Go(func() error { return src.Run(gctx, engine) })
	for _, m := range managers {
		g.Go(func() error { return m.Run(gctx) })
	}
	g.Go(func() error { return credentials.Run(gctx) })

	if minter != nil {
		select {
		case <-src.Initialized():
			if f.logFormat == "json" {
				// A text block would break a JSON log stream, and a log
				// record carries no token.
				logger.Warn("demo: development tokens only, not for production",
					slog.String("issuer", devtoken.Issuer), slog.String("audience", devtoken.Audience),
					slog.String("tokens", "verdict token mints them; --log-format text prints ready-to-paste requests"))
				break
			}
			d := demo{addr: addr, minter: minter, ready: engine.Status().Ready, embedded: !ok, devKeyFile: devKeyFile}
			if err := d.print(stderr); err != nil {
				logger.Error("demo tokens", slog.String("error", err.Error()))
			}
		case <-gctx.Done():
		}
	}
	return g.Wait()
}

// embeddedSource serves the embedded default policies.
func embeddedSource() (*staticSource, error) {
	snap, err := bundles.ReadFS(policies.FS(), bundles.ReadOptions{Origin: "embedded"})
	if err != nil {
		return nil, err
	}
	return &staticSource{snap: snap, init: make(chan struct{})}, nil
}

// staticSource delivers one snapshot (the embedded policies) and then waits.
type staticSource struct {
	snap *bundles.Snapshot
	init chan struct{}
	st   bundles.Status
}

func (s *staticSource) Run(ctx context.Context, sink bundles.Sink) error {
	err := sink.Load(ctx, s.snap)
	close(s.init)
	if err != nil {
		return fmt.Errorf("embedded policies: %w", err)
	}
	<-ctx.Done()
	return nil
}

func (s *staticSource) Initialized() <-chan struct{} { return s.init }
func (s *staticSource) Status() bundles.Status       { return s.st }

// keySets hands the key managers to the server for readiness, status and
// metrics.
func keySets(managers []*jwks.Manager) []server.KeySet {
	out := make([]server.KeySet, len(managers))
	for i, m := range managers {
		out[i] = m
	}
	return out
}
