package main

import (
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

// authzenOptions turns the authzen block into the server's AuthZEN
// options; nil (the endpoints off) without the block.
func authzenOptions(cfg *config.Config) (*server.AuthZEN, error) {
	if cfg.AuthZEN == nil {
		return nil, nil
	}
	peers, err := cfg.AuthZENPeerPrefixes()
	if err != nil {
		return nil, err
	}
	return &server.AuthZEN{
		TrustedPeers:   peers,
		TrustedCallers: cfg.AuthZEN.TrustedCallers,
		BaseURL:        cfg.AuthZEN.BaseURL,
		MaxEvaluations: cfg.AuthZEN.MaxEvaluations,
	}, nil
}
