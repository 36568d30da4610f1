package main

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/verdict-pdp/verdict/authz/token"
	"github.com/verdict-pdp/verdict/internal/filewatch"
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

// serverTLS builds the listeners' TLS from the configuration's tls block
// (nil without one): the certificate, its key and the client CAs are read
// now and added to files, which takes up a rotated certificate or CA
// bundle for every handshake after it, and for connections already open
// (see server.TLS). A certificate that does not match its key, or a CA
// file without a certificate, is refused and the old ones kept.
func serverTLS(cfg *config.Config, files *filewatch.Watcher) (*server.TLS, error) {
	if cfg.TLS == nil {
		return nil, nil
	}
	t, err := server.NewTLS(cfg.TLS.ClientAuth)
	if err != nil {
		return nil, err
	}
	paths := []string{cfg.Path(cfg.TLS.CertFile), cfg.Path(cfg.TLS.KeyFile)}
	if t.ClientCAs() {
		paths = append(paths, cfg.Path(cfg.TLS.ClientCAFile))
	}
	err = files.Add(filewatch.Set{Name: "tls", Paths: paths, Apply: func(contents [][]byte) error {
		cert, err := tls.X509KeyPair(contents[0], contents[1])
		if err != nil {
			return fmt.Errorf("cert_file %s, key_file %s: %w", cfg.TLS.CertFile, cfg.TLS.KeyFile, err)
		}
		var cas *x509.CertPool
		if t.ClientCAs() {
			if cas, err = server.CertPool(contents[2]); err != nil {
				return fmt.Errorf("client_ca_file %s: %w", cfg.TLS.ClientCAFile, err)
			}
		}
		return t.Set(cert, cas)
	}})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
	}
	return t, nil
}

// trustBundle reads callers.trust_bundle_file (nil without one) and adds it
// to files: a rotated bundle is believed for every forwarded certificate
// after it, and certificates verified under the old one are verified again.
func trustBundle(cfg *config.Config, files *filewatch.Watcher) (func() *x509.CertPool, error) {
	pool, err := caFile(cfg, "callers.trust_bundle_file", cfg.Callers.TrustBundleFile, files)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
	}
	return pool, nil
}

// caFile reads the PEM CA file that the configuration key names (nil when
// file is empty) and adds it to files: the pool returned is the CAs in
// service, replaced when the file changes; a file without a certificate
// is refused and the CAs before it kept. Its error names the key.
func caFile(cfg *config.Config, key, file string, files *filewatch.Watcher) (func() *x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	var pool atomic.Pointer[x509.CertPool]
	err := files.Add(filewatch.Set{Name: key, Paths: []string{cfg.Path(file)},
		Apply: func(contents [][]byte) error {
			p, err := server.CertPool(contents[0])
			if err != nil {
				return fmt.Errorf("%s: %w", file, err)
			}
			pool.Store(p)
			return nil
		}})
	if err != nil {
		return nil, err
	}
	return pool.Load, nil
}

// parseKeyFile reads a key file's contents: the keys it holds, whether it
// is whole (it parsed as a complete document, so a key it lacks is meant
// to be gone; a half-written file is not), and what is wrong with it.
type parseKeyFile func(data []byte) (keys []token.Key, whole bool, err error)

// keyFile reads issuer i's keys from file (named by the configuration
// key), and adds the file to files: whenever its contents change, they
// are parsed and checked as at start, and onRemoved hears of the keys that
// left, so that tokens they verified are not believed from a cache.
// Contents that fail the checks (a key too weak or of the wrong type, no
// key at all) add nothing, but a whole file still revokes: the keys it no
// longer holds are dropped. Contents that do not parse change nothing.
func keyFile(cfg *config.Config, i int, is config.Issuer, key, file string, files *filewatch.Watcher,
	logger *slog.Logger, onRemoved func(string, []string), parse parseKeyFile) (token.KeySet, error) {
	keys := token.NewReplaceableKeys(nil)
	forget := func(removed []string) {
		if len(removed) == 0 {
			return
		}
		if logger != nil {
			kids := make([]string, len(removed))
			for i, kid := range removed {
				kids[i] = cmp.Or(kid, "(no kid)")
			}
			logger.Info("token keys removed", slog.String("issuer", is.Issuer), slog.String("file", file), slog.Any("kids", kids))
		}
		if onRemoved != nil {
			onRemoved(is.Issuer, removed)
		}
	}
	err := files.Add(filewatch.Set{
		Name:  fmt.Sprintf("tokens.issuers[%d].%s", i, key),
		Paths: []string{cfg.Path(file)},
		Apply: func(contents [][]byte) error {
			parsed, whole, err := parse(contents[0])
			if !whole {
				return fmt.Errorf("%s: %w", file, err)
			}
			if err == nil && len(parsed) == 0 {
				err = errors.New("holds no keys")
			}
			if err == nil {
				var removed []string
				if removed, err = keys.Replace(parsed, is.Algorithms); err == nil {
					forget(removed)
					return nil
				}
			}
			// The same error however often it is retried: the keys dropped
			// are logged by forget.
			forget(keys.Retain(parsed))
			return fmt.Errorf("%s: %w", file, err)
		},
	})
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // the set's name restates what the caller says
		}
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	return keys, nil
}
