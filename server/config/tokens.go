package config

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/authz/token/jwks"
)

// KeyOptions configures the key managers built for remote issuers.
type KeyOptions struct {
	// Logger receives their refresh logs; nil discards them.
	Logger *slog.Logger
	// OnKeysRemoved is called when a key leaves an issuer's set (serve:
	// authz.Engine.ForgetKey for each kid); nil means nothing is called.
	OnKeysRemoved func(issuer string, kids []string)
}

// TokenOptions loads every issuer's keys and returns the verifier options.
// Keys from files are read once, now. A jwks_url or discovery issuer gets a
// jwks.Manager as its KeySet, returned in managers: nothing is fetched
// yet, and the caller must Run every manager (they serve keys only then).
func (c *Config) TokenOptions(ko KeyOptions) (opts token.Options, managers []*jwks.Manager, err error) {
	opts = token.Options{Leeway: c.Tokens.Leeway, MaxBytes: c.Tokens.MaxBytes, CallerAudiences: c.Callers.TokenAudiences}
	for i, is := range c.Tokens.Issuers {
		key := "tokens.issuers[" + strconv.Itoa(i) + "]"
		keys, err := c.issuerKeys(is, ko)
		if err != nil {
			return token.Options{}, nil, fmt.Errorf("%w: %s: %s (issuer %q): %w", ErrInvalid, c.File, key, is.Issuer, err)
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

// jwksPersistDir resolves tokens.jwks_persist_dir.
func (c *Config) jwksPersistDir() string {
	switch c.Tokens.JWKSPersistDir {
	case "off":
		return ""
	case "":
		if dir, err := os.UserCacheDir(); err == nil {
			return filepath.Join(dir, "verdict", "jwks")
		}
		return ""
	}
	return c.Path(c.Tokens.JWKSPersistDir)
}

func (c *Config) issuerKeys(is Issuer, ko KeyOptions) (token.KeySet, error) {
	switch {
	case is.JWKSFile != "":
		data, err := os.ReadFile(c.Path(is.JWKSFile))
		if err != nil {
			return nil, fmt.Errorf("jwks_file: %w", err)
		}
		keys, err := token.ParseJWKS(data)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: %w", is.JWKSFile, err)
		}
		return token.StaticKeys(keys), nil
	case is.PublicKeyFile != "":
		data, err := os.ReadFile(c.Path(is.PublicKeyFile))
		if err != nil {
			return nil, fmt.Errorf("public_key_file: %w", err)
		}
		k, err := token.ParsePublicKeyPEM(data)
		if err != nil {
			return nil, fmt.Errorf("public_key_file %s: %w", is.PublicKeyFile, err)
		}
		return token.StaticKeys{k}, nil
	case is.HMACSecretFile != "":
		data, err := os.ReadFile(c.Path(is.HMACSecretFile))
		if err != nil {
			return nil, fmt.Errorf("hmac_secret_file: %w", err)
		}
		return token.StaticKeys{token.HMACKey([]byte(strings.TrimRight(string(data), "\r\n")))}, nil
	case is.HMACSecretEnv != "":
		secret, ok := os.LookupEnv(is.HMACSecretEnv)
		if !ok || secret == "" {
			return nil, fmt.Errorf("hmac_secret_env: environment variable %s is not set", is.HMACSecretEnv)
		}
		return token.StaticKeys{token.HMACKey([]byte(secret))}, nil
	case is.JWKSURL != "", is.Discovery:
		return jwks.New(jwks.Options{
			Issuer:        is.Issuer,
			URL:           is.JWKSURL,
			Discovery:     is.Discovery,
			CAFile:        c.Path(is.CAFile),
			MinRefresh:    is.MinRefresh,
			MaxRefresh:    is.MaxRefresh,
			MaxStale:      is.MaxStale,
			PersistDir:    c.jwksPersistDir(),
			OnKeysRemoved: ko.OnKeysRemoved,
			Logger:        ko.Logger,
		})
	}
	return nil, fmt.Errorf("no key source")
}
