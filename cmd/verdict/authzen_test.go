package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/verdict-pdp/verdict/server/config"
)

func TestAuthZENOptions(t *testing.T) {
	got, err := authzenOptions(&config.Config{})
	if err != nil || got != nil {
		t.Fatalf("without the block: %+v, %v; want nil (endpoints off)", got, err)
	}
	cfg, err := config.Parse([]byte(`tls: {cert_file: s.pem, key_file: k.pem, client_ca_file: ca.pem, client_auth: request}
authzen:
  trusted_peers: [10.0.0.0/8, "::1"]
  trusted_callers: [spiffe://example.org/bff]
  base_url: https://pdp.example.com
  max_evaluations: 7
`), "v.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err = authzenOptions(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.TrustedPeers, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}) ||
		!slices.Equal(got.TrustedCallers, []string{"spiffe://example.org/bff"}) ||
		got.BaseURL != "https://pdp.example.com" || got.MaxEvaluations != 7 {
		t.Errorf("options = %+v", got)
	}
}
