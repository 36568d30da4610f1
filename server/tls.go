package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
)

// TLS is a listener's TLS configuration whose certificate and client CAs
// can be replaced while it serves (Set), as when a certificate manager
// rotates them: every handshake after Set uses the new ones, connections
// already open keep theirs. TLS 1.2 or later. A client certificate is
// verified against the client CAs whenever one is presented, so that a
// peer certificate reaching the engine as caller has a verified chain. It
// is safe for concurrent use.
type TLS struct {
	clientAuth tls.ClientAuthType
	current    atomic.Pointer[tls.Config]
}

// NewTLS returns a TLS for clientAuth: "" (no client certificates),
// "request" (verified when given) or "require" (a verified client
// certificate is required). It holds no certificate: Set must succeed
// before a listener serves with Config.
func NewTLS(clientAuth string) (*TLS, error) {
	t := &TLS{}
	switch clientAuth {
	case "":
		t.clientAuth = tls.NoClientCert
	case "request":
		t.clientAuth = tls.VerifyClientCertIfGiven
	case "require":
		t.clientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("%w: client auth %q: want request or require", ErrOptions, clientAuth)
	}
	return t, nil
}

// ClientCAs reports whether Set needs client CAs.
func (t *TLS) ClientCAs() bool { return t.clientAuth != tls.NoClientCert }

// Set replaces the certificate and the client CAs: certPEM is the server's
// certificate (chain) and keyPEM its key, which must match; clientCAsPEM
// must hold at least one certificate when client certificates are asked
// for, and is ignored otherwise. On error nothing changes.
func (t *TLS) Set(certPEM, keyPEM, clientCAsPEM []byte) error {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("server: tls: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientAuth:   t.clientAuth,
	}
	if t.ClientCAs() {
		if cfg.ClientCAs, err = CertPool(clientCAsPEM); err != nil {
			return fmt.Errorf("server: tls: client CAs: %w", err)
		}
	}
	t.current.Store(cfg)
	return nil
}

// Config returns the configuration to serve with: each handshake takes the
// certificate and client CAs set last.
func (t *TLS) Config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := t.current.Load()
			if cfg == nil {
				return nil, errors.New("server: tls: no certificate set")
			}
			return cfg, nil
		},
	}
}

// CertPool reads PEM CA certificates into a pool. Data without any
// certificate is an error.
func CertPool(pemCerts []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemCerts) {
		return nil, errors.New("no PEM certificates found")
	}
	return pool, nil
}

// withALPN returns a copy of cfg that offers protos by ALPN, also in the
// configuration its GetConfigForClient returns: an http.Server adds its
// protocols (h2) to the configuration it is given, but a handshake uses
// the one GetConfigForClient returns.
func withALPN(cfg *tls.Config, protos ...string) *tls.Config {
	out := cfg.Clone()
	out.NextProtos = protos
	if get := cfg.GetConfigForClient; get != nil {
		out.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := get(hello)
			if err != nil || c == nil || slices.Equal(c.NextProtos, protos) {
				return c, err
			}
			c = c.Clone()
			c.NextProtos = protos
			return c, nil
		}
	}
	return out
}
