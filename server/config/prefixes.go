package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// AuthZENPeerPrefixes returns authzen.trusted_peers as prefixes; a single
// IP becomes a one-address prefix. None without an authzen block.
func (c *Config) AuthZENPeerPrefixes() ([]netip.Prefix, error) {
	if c.AuthZEN == nil {
		return nil, nil
	}
	return c.prefixes("authzen.trusted_peers", c.AuthZEN.TrustedPeers)
}

// ExtAuthzPeerPrefixes returns ext_authz.trusted_peers as prefixes; a
// single IP becomes a one-address prefix. None without an ext_authz block.
func (c *Config) ExtAuthzPeerPrefixes() ([]netip.Prefix, error) {
	if c.ExtAuthz == nil {
		return nil, nil
	}
	return c.prefixes("ext_authz.trusted_peers", c.ExtAuthz.TrustedPeers)
}

// TrustedProxyPrefixes returns callers.trusted_proxies as prefixes; a single
// IP becomes a one-address prefix.
func (c *Config) TrustedProxyPrefixes() ([]netip.Prefix, error) {
	return c.prefixes("callers.trusted_proxies", c.Callers.TrustedProxies)
}

// prefixes parses the list of CIDR prefixes or single IPs at key. A prefix
// that trusts every address (0.0.0.0/0, ::/0), one with bits set past its
// length (10.1.2.3/8, surely a typo for an address or a narrower network)
// are refused; an IPv4-mapped IPv6 prefix is taken as the IPv4 prefix it
// maps, as peers are compared.
func (c *Config) prefixes(key string, list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	for i, p := range list {
		pf, err := parsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %s[%d]: %w", ErrInvalid, c.File, key, i, err)
		}
		out = append(out, pf)
	}
	return out, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or IP address", s)
		}
		if p != p.Masked() {
			return netip.Prefix{}, fmt.Errorf("%q has bits set past its length: write %s if that is what you mean", s, p.Masked())
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			// Peers are compared as IPv4 (addrIn unmaps them), so the
			// prefix must be too: ::ffff:10.0.0.0/104 is 10.0.0.0/8.
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		if p.Bits() == 0 {
			return netip.Prefix{}, fmt.Errorf("%q trusts every address: name the proxies' networks", s)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
