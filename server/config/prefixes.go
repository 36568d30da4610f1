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

// prefixes parses the list of CIDR prefixes or single IPs at key.
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
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR prefix or IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
