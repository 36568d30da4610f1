package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/verdict-pdp/verdict/authz/token"
)

// TokenOptions loads every issuer's keys and returns the verifier options.
// Keys from files are read once, now; remote key sources (jwks_url,
// discovery) are refused until a key manager serves them.
func (c *Config) TokenOptions() (token.Options, error) {
	opts := token.Options{Leeway: c.Tokens.Leeway, MaxBytes: c.Tokens.MaxBytes}
	for i, is := range c.Tokens.Issuers {
		key := "tokens.issuers[" + strconv.Itoa(i) + "]"
		keys, err := c.issuerKeys(is)
		if err != nil {
			return token.Options{}, fmt.Errorf("%w: %s: %s (issuer %q): %w", ErrInvalid, c.File, key, is.Issuer, err)
		}
		opts.Issuers = append(opts.Issuers, token.Issuer{
			Issuer:      is.Issuer,
			Audiences:   is.Audiences,
			Algorithms:  is.Algorithms,
			Keys:        keys,
			ExpOptional: is.ExpOptional,
		})
	}
	return opts, nil
}

func (c *Config) issuerKeys(is Issuer) (token.KeySet, error) {
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
		return nil, fmt.Errorf("jwks_url and discovery are not supported yet: use jwks_file, public_key_file or an HMAC secret")
	}
	return nil, fmt.Errorf("no key source")
}
