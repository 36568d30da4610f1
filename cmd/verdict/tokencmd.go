package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/verdict-pdp/verdict/authz/devtoken"
)

// claimFlags are the claims that have a flag of their own: --claim may not
// set them, so that what the flags say is what the token holds.
var claimFlags = map[string]string{"sub": "--sub", "iss": "--iss", "aud": "--aud", "roles": "--roles", "azp": "--azp"}

func newTokenCommand() *cobra.Command {
	var (
		keyPath string
		sub     string
		iss     string
		aud     []string
		pubKey  bool
		roles   []string
		azp     string
		claims  []string
		ttl     time.Duration
	)
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint a development token (not for production)",
		Long: `Token prints a JWT signed by a local development key, for trying policies
with "verdict decide" and the demo server. The key is created on first use
(default: verdict/dev-key.pem in your user configuration directory) and is
trusted only by commands run without a configuration file.

To try a configuration of your own with development tokens, trust the key
there: --public-key prints it for an issuer's public_key_file, and --iss and
--aud mint tokens for that issuer (with algorithms: [EdDSA]).

This is NOT for production: anyone who can read the key can mint any identity.`,
		Example: `  verdict token --sub alice --roles viewer
  verdict token --sub bob --roles editor,admin --ttl 10m
  verdict token --sub payments --azp payments          # a service token
  verdict token --claim tenant=acme --claim 'groups=["a","b"]'
  verdict token --public-key > keys/dev.pem             # public_key_file: keys/dev.pem
  verdict token --iss https://dev.example --aud orders-api --sub alice`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if keyPath == "" {
				var err error
				if keyPath, err = devtoken.DefaultKeyPath(); err != nil {
					return &exitCode{code: exitError, err: err}
				}
			}
			m, created, err := devtoken.LoadOrCreate(keyPath)
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			if pubKey {
				pem, err := m.PublicKeyPEM()
				if err != nil {
					return &exitCode{code: exitError, err: err}
				}
				if created {
					fmt.Fprintf(cmd.ErrOrStderr(), "verdict: created development key %s\n", keyPath)
				}
				_, err = cmd.OutOrStdout().Write(pem)
				return err
			}
			extra := map[string]any{}
			if iss != "" {
				extra["iss"] = iss
			}
			switch len(aud) {
			case 0:
			case 1:
				extra["aud"] = aud[0]
			default:
				extra["aud"] = aud
			}
			if len(roles) > 0 {
				extra["roles"] = roles
			}
			if azp != "" {
				extra["azp"] = azp
				if len(aud) == 0 {
					extra["aud"] = devtoken.CallerAudience // a service token, for callers only
				}
			}
			for _, c := range claims {
				k, v, ok := strings.Cut(c, "=")
				if !ok || k == "" {
					return usageError("--claim %q: want name=value", c)
				}
				if flag, owned := claimFlags[k]; owned {
					return usageError("--claim %s: use %s", k, flag)
				}
				var parsed any
				if json.Unmarshal([]byte(v), &parsed) == nil {
					extra[k] = parsed
				} else {
					extra[k] = v
				}
			}
			if ttl <= 0 {
				return usageError("--ttl %s: want a positive lifetime", ttl)
			}
			tok, err := m.Mint(sub, extra, ttl, time.Now())
			if err != nil {
				return &exitCode{code: exitError, err: err}
			}
			stderr := cmd.ErrOrStderr()
			if created {
				fmt.Fprintf(stderr, "verdict: created development key %s\n", keyPath)
			}
			iss, aud := any(devtoken.Issuer), any(devtoken.Audience)
			if v, ok := extra["iss"]; ok {
				iss = v
			}
			if v, ok := extra["aud"]; ok {
				aud = v
			}
			expires := "expires in " + ttl.String()
			if v, ok := extra["exp"]; ok {
				expires = fmt.Sprintf("exp %v as given", v)
			}
			fmt.Fprintf(stderr, "verdict: development token for sub %q (issuer %v, audience %v, %s), signed by the development key - NOT FOR PRODUCTION\n",
				sub, iss, aud, expires)
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&keyPath, "dev-key", "", "development key file (created when missing)")
	fl.StringVar(&sub, "sub", "alice", "subject (sub claim)")
	fl.StringSliceVar(&roles, "roles", nil, "roles claim, comma separated")
	fl.StringVar(&iss, "iss", "", "issuer (iss claim; default "+devtoken.Issuer+")")
	fl.StringSliceVar(&aud, "aud", nil, "audiences (aud claim), comma separated (default "+devtoken.Audience+", or "+devtoken.CallerAudience+" with --azp)")
	fl.BoolVar(&pubKey, "public-key", false, "print the development key's public half (PEM) instead of a token, for an issuer's public_key_file")
	fl.StringVar(&azp, "azp", "", "authorized party (azp claim): makes a service token, with audience "+devtoken.CallerAudience+" unless --aud")
	fl.StringArrayVar(&claims, "claim", nil, "extra claim name=value (value parsed as JSON when it is JSON)")
	fl.DurationVar(&ttl, "ttl", time.Hour, "lifetime")
	return cmd
}
