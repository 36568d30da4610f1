package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/devtoken"
	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/internal/printable"
	"github.com/verdict-pdp/verdict/internal/regularfile"
	"github.com/verdict-pdp/verdict/server/config"
)

type decideFlags struct {
	policies    string
	entrypoint  string
	configFile  string
	devKey      string
	token       string
	action      string
	method      string
	path        string
	resource    string
	attributes  string
	callerCert  string
	callerToken string
	explain     string // "", "text" or "json"
	input       string // a whole input document, from a file ("-": stdin)
	at          string // RFC 3339: the clock for input.context.time and the clock builtins
	followLinks bool   // see addFollowLinks
	allowNet    bool   // see addAllowNet
}

func newDecideCommand() *cobra.Command {
	var f decideFlags
	cmd := &cobra.Command{
		Use:   "decide --action NAME [--token JWT] [flags]",
		Short: "Answer one decision and print it as JSON",
		Long: `Decide builds the input document from the flags, evaluates the policies and
prints the decision as JSON.

The policies are --policies (a directory, a .rego file or a bundle file),
else the configuration's policy.dir or policy.bundle_file.

--explain lists the rules that produced the decision, in the order they held,
with file:row and value (and which else branch fired); print() output goes to
stderr. --input FILE evaluates a whole input document as written (no token is
verified: it is for trying cases, and says so), so the flags that build one
(--action, --method, --path, --token, --caller-token, --caller-cert,
--resource, --attributes) are usage errors with it; --time fixes the clock.
An action is --action, or --method with --path: half of that pair is a
usage error.

Exit status: 0 allowed, 1 denied (including an invalid token), 2 error (a
usage error, a policy that does not load, or an outage such as an issuer's
key set that cannot be fetched: an outage is not a policy's answer).

Without --config, tokens are trusted only from the development issuer whose key
"verdict token" keeps (see --dev-key).`,
		Example: `  verdict decide --policies ./policies --token "$(verdict token --sub alice --roles viewer)" --action orders:read
  verdict decide --policies . --method GET --path /catalog/items
  verdict decide --config verdict.yaml --action inventory:reserve --caller-token "$SERVICE_TOKEN"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDecide(cmd, &f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.configFile, "config", "", "configuration file (issuers, policy source, entrypoint)")
	fl.StringVar(&f.policies, "policies", "", "policy directory, .rego file or bundle file (default: the configuration's policy.dir or policy.bundle_file); a bundle is verified when the configuration names a verification key")
	fl.StringVar(&f.entrypoint, "entrypoint", "", `policy package to evaluate (default: the configuration's policy.entrypoint, else "authz")`)
	fl.StringVar(&f.devKey, "dev-key", "", "development key file trusted without --config, which must be readable (default: the one 'verdict token' uses, when there is one)")
	fl.StringVar(&f.token, "token", "", "the subject's bearer token (compact JWT); empty means anonymous")
	fl.StringVar(&f.action, "action", "", "action name, e.g. orders:read")
	fl.StringVar(&f.method, "method", "", "HTTP method of the request, e.g. GET")
	fl.StringVar(&f.path, "path", "", "HTTP path of the request, e.g. /orders/42")
	fl.StringVar(&f.resource, "resource", "", "resource as a JSON object")
	fl.StringVar(&f.attributes, "attributes", "", "context attributes as a JSON object")
	fl.StringVar(&f.callerCert, "caller-cert", "", "PEM file of the calling service's certificate (taken as a verified mTLS peer)")
	fl.StringVar(&f.callerToken, "caller-token", "", "the calling service's token")
	fl.StringVar(&f.explain, "explain", "", "explain the decision: the rules that produced it, with file:row and value, on stderr (text) or in the JSON (json)")
	fl.Lookup("explain").NoOptDefVal = "text"
	fl.StringVar(&f.input, "input", "", "evaluate this whole input document (a JSON file, - for stdin) instead of building one: no token is verified")
	fl.StringVar(&f.at, "time", "", "decide as of this time (RFC 3339): input.context.time (with --input too), the clock builtins, and the token's validity")
	addFollowLinks(fl, &f.followLinks)
	addAllowNet(fl, &f.allowNet)
	return cmd
}

func runDecide(cmd *cobra.Command, f *decideFlags) error {
	var cfg *config.Config
	opts := authz.Options{}
	if f.configFile != "" && f.devKey != "" {
		return usageError("--dev-key is trusted only without --config: the configuration names the issuers")
	}
	if f.configFile != "" {
		var err error
		if cfg, err = config.Load(f.configFile); err != nil {
			return &exitCode{code: exitError, err: err}
		}
		// The engine serve would run: entrypoint, evaluator, eval_timeout
		// and eval_heap_limit, cache bounds, require_tests.
		opts = engineOptions(cfg)
		var managers []*jwks.Manager
		// Key files are read once: nothing watches them here.
		if opts.Tokens, managers, err = tokenOptions(cfg, nil, filewatch.New(filewatch.Options{}), nil); err != nil {
			return &exitCode{code: exitError, err: err}
		}
		// Remote key sets: fetch once (or read the persisted set) before deciding.
		stop := fetchKeysOnce(cmd.Context(), managers)
		defer stop()
	} else if dev, ok, err := devIssuer(f.devKey); err != nil {
		return usageError("--dev-key: %w", err)
	} else if ok {
		opts.Tokens = dev
	}
	if f.entrypoint != "" {
		opts.Entrypoint = f.entrypoint
	}
	opts.NoNetwork = !f.allowNet
	switch f.explain {
	case "", "text", "json":
	default:
		return usageError("--explain %q: want text or json", f.explain)
	}
	stderr := cmd.ErrOrStderr()
	opts.Print = func(_ context.Context, loc, msg string) {
		fmt.Fprintf(stderr, "%s: %s\n", printable.String(loc), printable.String(msg))
	}
	var at time.Time
	if f.at != "" {
		var err error
		if at, err = time.Parse(time.RFC3339, f.at); err != nil {
			return usageError("--time %q: want RFC 3339, e.g. 2026-12-01T09:00:00Z", f.at)
		}
		opts.Now = func() time.Time { return at }
	}

	var req authz.Request
	var input any
	var err error
	if f.input != "" {
		if given := requestFlagsGiven(cmd); len(given) > 0 {
			return usageError("--input is evaluated as written: %s cannot be combined with it (put their values in the document)", strings.Join(given, ", "))
		}
		if input, err = readInput(cmd, f.input); err != nil {
			return usageError("--input: %v", err)
		}
		if !at.IsZero() {
			if input, err = withContextTime(input, at); err != nil {
				return usageError("--input with --time: %v", err)
			}
		}
	} else if req, err = f.request(); err != nil {
		return &exitCode{code: exitError, err: err}
	}
	req.Explain = f.explain != ""
	engine, err := authz.New(opts)
	if err != nil {
		return &exitCode{code: exitError, err: err}
	}
	if f.policies == "" && (cfg == nil || cfg.Policy.Dir == "" && cfg.Policy.BundleFile == "" && cfg.Policy.BundleURL == "") {
		return usageError("name the policies: --policies with a directory (. for this one), a .rego file or a bundle file, or a --config with policy.dir or policy.bundle_file")
	}
	snap, err := readPolicies(f.policies, cfg, f.followLinks)
	if err != nil {
		return loadError(err)
	}
	if err := engine.Load(cmd.Context(), snap); err != nil {
		return loadError(err)
	}
	var d authz.Decision
	if input != nil {
		fmt.Fprintln(stderr, "verdict: evaluating the input document as written: no token was verified")
		d, err = engine.EvaluateInput(cmd.Context(), input, authz.InputOptions{Explain: req.Explain})
	} else {
		d, err = engine.Decide(cmd.Context(), req)
	}
	if !at.IsZero() && (errors.Is(err, token.ErrExpired) || errors.Is(err, token.ErrNotYetValid)) {
		fmt.Fprintln(stderr, "verdict: the token is checked as of --time too: mint one valid then, or leave --time out")
	}
	if errors.Is(err, token.ErrKeysUnavailable) {
		// The issuer's keys could not be fetched (or are stale): an outage,
		// not the policy's answer, so no decision is printed.
		return &exitCode{code: exitError, err: err}
	}
	if f.explain == "text" {
		fmt.Fprintln(stderr, "explanation (rules that held, in order):")
		for _, s := range d.Explanation {
			fmt.Fprintln(stderr, "  "+printable.String(s.String()))
		}
		d.Explanation = nil
	}
	if encErr := printJSON(cmd.OutOrStdout(), d); encErr != nil {
		return &exitCode{code: exitError, err: encErr}
	}
	switch {
	case errors.Is(err, authz.ErrToken), errors.Is(err, authz.ErrCaller):
		return &exitCode{code: exitDeny}
	case err != nil:
		return &exitCode{code: exitError, err: err}
	case !d.Allow:
		return &exitCode{code: exitDeny}
	}
	return nil
}

// readInput reads a JSON input document from a file, or stdin for "-",
// numbers kept exact.
// maxInputBytes bounds an --input document.
const maxInputBytes = 64 << 20

func readInput(cmd *cobra.Command, path string) (any, error) {
	var r io.Reader = cmd.InOrStdin()
	if path != "-" {
		f, err := regularfile.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxInputBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxInputBytes {
		return nil, fmt.Errorf("larger than %d MiB", maxInputBytes>>20)
	}
	// One JSON value, without duplicate member names (the server refuses
	// them too: which one counts is the reader's guess).
	if !jsontext.Value(data).IsValid() {
		return nil, errors.New("not one JSON value without duplicate member names")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	if v == nil {
		return nil, errors.New("not a JSON object: null")
	}
	return v, nil
}

// devIssuer trusts the development key at path, which must be readable;
// for "", the default key ("verdict token"'s) when it exists, and none
// (false) when it does not.
func devIssuer(path string) (token.Options, bool, error) {
	explicit := path != ""
	if !explicit {
		var err error
		if path, err = devtoken.DefaultKeyPath(); err != nil {
			return token.Options{}, false, nil
		}
	}
	m, err := devtoken.Load(path)
	if !explicit && errors.Is(err, fs.ErrNotExist) {
		return token.Options{}, false, nil
	}
	if err != nil {
		return token.Options{}, false, err
	}
	return m.TokenOptions(), true, nil
}

// requestFlags are the flags that build the request's input document:
// --input, which evaluates a whole document as written, excludes them.
var requestFlags = []string{"token", "action", "method", "path", "resource", "attributes", "caller-cert", "caller-token"}

// requestFlagsGiven names the requestFlags given on cmd's command line
// (an empty value given counts), as "--name", in requestFlags' order.
func requestFlagsGiven(cmd *cobra.Command) []string {
	var given []string
	for _, name := range requestFlags {
		if cmd.Flags().Changed(name) {
			given = append(given, "--"+name)
		}
	}
	return given
}

// request builds the request the flags describe. Its errors are usage
// errors: an action must be named, by --action or by both --method and
// --path (half of that pair would be decided as an action of no name, a
// deny that looks like the policy's answer).
func (f *decideFlags) request() (authz.Request, error) {
	req := authz.Request{
		Token:  token.Raw(strings.TrimSpace(f.token)),
		Action: authz.Action{Name: f.action, Method: f.method, Path: f.path},
		Caller: authz.Caller{Token: token.Raw(strings.TrimSpace(f.callerToken))},
	}
	switch a := req.Action; {
	case a.Method != "" && a.Path == "":
		return req, errors.New("--method without --path: give both, or --action")
	case a.Path != "" && a.Method == "":
		return req, errors.New("--path without --method: give both, or --action")
	case a.Name == "" && a.Method == "":
		return req, errors.New("give --action, or --method and --path")
	}
	var err error
	if req.Resource, err = jsonObject("--resource", f.resource); err != nil {
		return req, err
	}
	if req.Attributes, err = jsonObject("--attributes", f.attributes); err != nil {
		return req, err
	}
	if f.callerCert != "" {
		data, err := os.ReadFile(f.callerCert)
		if err != nil {
			return req, err
		}
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "CERTIFICATE" {
			return req, fmt.Errorf("--caller-cert %s: no PEM CERTIFICATE block", f.callerCert)
		}
		if req.Caller.Certificate, err = x509.ParseCertificate(block.Bytes); err != nil {
			return req, fmt.Errorf("--caller-cert %s: %w", f.callerCert, err)
		}
	}
	return req, nil
}

func jsonObject(flag, s string) (map[string]any, error) {
	if s == "" {
		return nil, nil
	}
	var m map[string]any
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: not a JSON object: %w", flag, err)
	}
	return m, nil
}

// fetchKeysOnce runs the key managers until each has made its first
// attempt; the returned function stops them and waits for them.
func fetchKeysOnce(ctx context.Context, managers []*jwks.Manager) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, m := range managers {
		wg.Go(func() { _ = m.Run(ctx) })
	}
	for _, m := range managers {
		select {
		case <-m.Initialized():
		case <-ctx.Done():
		}
	}
	return func() { cancel(); wg.Wait() }
}

// withContextTime is the input document with context.time set to at, as
// --time promises: a document written without it (or with another) is
// decided as of at.
func withContextTime(input any, at time.Time) (any, error) {
	doc, ok := input.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("the input document is not an object")
	}
	ctx, ok := doc["context"].(map[string]any)
	switch {
	case doc["context"] == nil:
		ctx = map[string]any{}
	case !ok:
		return nil, fmt.Errorf("input.context is not an object")
	}
	ctx["time"] = at.UTC().Format(time.RFC3339Nano)
	doc["context"] = ctx
	return doc, nil
}
