package config_test

import (
	"net/netip"
	"slices"
	"testing"
)

func TestParseAuthZEN(t *testing.T) {
	c := mustParse(t, `tls: {cert_file: s.pem, key_file: s-key.pem, client_ca_file: ca.pem, client_auth: request}
authzen:
  trusted_peers: [10.0.0.0/8, 127.0.0.1]
  trusted_callers: [spiffe://example.org/ns/web/sa/bff]
  base_url: https://pdp.example.com/
  max_evaluations: 20
`, "/etc/verdict/v.yaml")
	a := c.AuthZEN
	if a == nil || a.BaseURL != "https://pdp.example.com/" || a.MaxEvaluations != 20 ||
		!slices.Equal(a.TrustedCallers, []string{"spiffe://example.org/ns/web/sa/bff"}) {
		t.Fatalf("authzen = %+v", a)
	}
	got, err := c.AuthZENPeerPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	if !slices.Equal(got, want) {
		t.Errorf("prefixes = %v, want %v", got, want)
	}

	c = mustParse(t, "addr: 127.0.0.1:0\n", "v.yaml")
	if c.AuthZEN != nil {
		t.Errorf("authzen = %+v without the block, want nil (endpoints off)", c.AuthZEN)
	}
}

func TestParseAuthZENErrors(t *testing.T) {
	tests := []invalidCase{
		{name: "no trusted clients", data: "addr: x\nauthzen:\n  base_url: https://pdp.example.com\n",
			want: []string{"v.yaml:2: authzen: set trusted_peers or trusted_callers"}},
		{name: "empty block", data: "addr: x\nauthzen:\n", want: []string{"v.yaml:2: authzen: the block is empty"}},
		{name: "bad peer", data: "authzen:\n  trusted_peers:\n    - 10.0.0.0/8\n    - ten\n",
			want: []string{"v.yaml:4: authzen.trusted_peers[1]"}},
		{name: "callers without client CA", data: "authzen:\n  trusted_callers: [bff]\n",
			want: []string{"v.yaml:2: authzen.trusted_callers: needs tls.client_ca_file"}},
		{name: "empty caller", data: "tls: {cert_file: a, key_file: b, client_ca_file: c, client_auth: require}\nauthzen:\n  trusted_callers: [\"\"]\n",
			want: []string{"v.yaml:3: authzen.trusted_callers[0]: must not be empty"}},
		{name: "base_url not absolute", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  base_url: pdp.example.com\n",
			want: []string{"v.yaml:3: authzen.base_url"}},
		{name: "base_url with query", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  base_url: https://pdp.example.com/?t=1\n",
			want: []string{"v.yaml:3: authzen.base_url"}},
		{name: "base_url with fragment", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  base_url: https://pdp.example.com#x\n",
			want: []string{"v.yaml:3: authzen.base_url"}},
		{name: "base_url with user", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  base_url: https://u:p@pdp.example.com\n",
			want: []string{"v.yaml:3: authzen.base_url"}},
		{name: "base_url ftp", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  base_url: ftp://pdp.example.com\n",
			want: []string{"v.yaml:3: authzen.base_url"}},
		{name: "negative max", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  max_evaluations: -1\n",
			want: []string{"v.yaml:3: authzen.max_evaluations"}},
		{name: "unknown key", data: "authzen:\n  trusted_peers: [10.0.0.1]\n  trusted_proxies: [10.0.0.1]\n",
			want: []string{`v.yaml:3: unknown key "trusted_proxies"`}},
	}
	parseInvalidCases(t, tests)
}
