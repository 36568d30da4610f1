package server

import "net/netip"

// addrIn reports whether a is in one of prefixes (masked prefixes, as New
// stores them). An IPv4-mapped IPv6 address (::ffff:10.0.0.1, how a
// dual-stack listener reports an IPv4 peer) matches IPv4 prefixes.
func addrIn(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerIn reports whether remoteAddr, an http.Request's RemoteAddr
// (host:port), is in one of prefixes; an address that does not parse is
// in none.
func peerIn(prefixes []netip.Prefix, remoteAddr string) bool {
	if len(prefixes) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	return err == nil && addrIn(prefixes, ap.Addr())
}
