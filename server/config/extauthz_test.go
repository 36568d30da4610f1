package config_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseExtAuthz(t *testing.T) {
	c := mustParse(t, "ext_authz: {grpc_addr: 127.0.0.1:9191, trusted_peers: [127.0.0.1/32, 10.1.2.3, \"::ffff:10.0.0.0/104\"]}\n", "v.yaml")
	if c.ExtAuthz == nil || c.ExtAuthz.GRPCAddr != "127.0.0.1:9191" {
		t.Fatalf("ext_authz = %+v", c.ExtAuthz)
	}
	got, err := c.ExtAuthzPeerPrefixes()
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("10.1.2.3/32"),
		netip.MustParsePrefix("10.0.0.0/8")} // peers are compared as IPv4
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("prefixes (-want +got):\n%s", diff)
	}

	// Without the block, nothing is served and no peer is trusted.
	c = mustParse(t, "addr: 127.0.0.1:8181\n", "v.yaml")
	if p, err := c.ExtAuthzPeerPrefixes(); c.ExtAuthz != nil || p != nil || err != nil {
		t.Errorf("no block: %+v %v %v", c.ExtAuthz, p, err)
	}
}

func TestParseExtAuthzErrors(t *testing.T) {
	tests := []invalidCase{
		{name: "address required", data: "addr: 127.0.0.1:8181\next_authz:\n  trusted_peers: [127.0.0.1]\n",
			want: []string{"v.yaml:2: ext_authz.grpc_addr: required when ext_authz is set"}},
		{name: "empty block", data: "ext_authz: {}\n",
			want: []string{"v.yaml:1: ext_authz.grpc_addr: required"}},
		{name: "address without port", data: "ext_authz:\n  grpc_addr: localhost\n",
			want: []string{`v.yaml:2: ext_authz.grpc_addr: "localhost" is not host:port`}},
		{name: "bad prefix", data: "ext_authz:\n  grpc_addr: :9191\n  trusted_peers:\n    - 127.0.0.1/32\n    - 10.0.0.0/99\n",
			want: []string{`v.yaml:5: ext_authz.trusted_peers[1]: "10.0.0.0/99" is not a CIDR prefix or IP address`}},
		{name: "unknown key", data: "ext_authz:\n  grpc_addr: :9191\n  trusted_proxies: [127.0.0.1]\n",
			want: []string{`v.yaml:3: unknown key "trusted_proxies"`}},
	}
	parseInvalidCases(t, tests)
}
