package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
)

// TLSOptions name the files of a TLS listener.
type TLSOptions struct {
	// CertFile and KeyFile are the server's PEM certificate (chain) and key
	// (required).
	CertFile string
	KeyFile  string
	// ClientCAFile holds the PEM CAs that client certificates must chain to.
	ClientCAFile string
	// ClientAuth is "" (no client certificates), "request" (verified when
	// given) or "require" (a verified client certificate is required).
	ClientAuth string
}

// TLSConfig builds the listener's TLS configuration: TLS 1.2 or later, and
// client certificates as ClientAuth says. A client certificate is always
// verified against ClientCAFile when one is presented, so that a peer
// certificate reaching the engine as caller has a verified chain.
func TLSConfig(o TLSOptions) (*tls.Config, error) {
	if o.CertFile == "" || o.KeyFile == "" {
		return nil, fmt.Errorf("%w: TLS needs a certificate and a key file", ErrOptions)
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server: tls: %w", err)
	}
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
	}
	switch o.ClientAuth {
	case "":
		return cfg, nil
	case "request":
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	case "require":
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	default:
		return nil, fmt.Errorf("%w: client auth %q: want request or require", ErrOptions, o.ClientAuth)
	}
	if o.ClientCAFile == "" {
		return nil, fmt.Errorf("%w: client auth %q needs a client CA file", ErrOptions, o.ClientAuth)
	}
	if cfg.ClientCAs, err = LoadCertPool(o.ClientCAFile); err != nil {
		return nil, err
	}
	return cfg, nil
}

// LoadCertPool reads a PEM file of CA certificates into a pool. A file
// without any certificate is an error.
func LoadCertPool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("server: %s: %w", file, errors.New("no PEM certificates found"))
	}
	return pool, nil
}
