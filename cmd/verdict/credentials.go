package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"

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
	if cfg.Callers.TrustBundleFile == "" {
		return nil, nil
	}
	var pool atomic.Pointer[x509.CertPool]
	err := files.Add(filewatch.Set{Name: "callers.trust_bundle_file", Paths: []string{cfg.Path(cfg.Callers.TrustBundleFile)},
		Apply: func(contents [][]byte) error {
			p, err := server.CertPool(contents[0])
			if err != nil {
				return fmt.Errorf("%s: %w", cfg.Callers.TrustBundleFile, err)
			}
			pool.Store(p)
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", config.ErrInvalid, cfg.File, err)
	}
	return pool.Load, nil
}
