package main

import (
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/verdict-pdp/verdict/authz/devtoken"
)

// demoTTL is how long the printed demo tokens are valid.
const demoTTL = time.Hour

// demo is what the demo server tells a newcomer at start.
type demo struct {
	addr     net.Addr
	minter   *devtoken.Minter // the demo's development issuer
	ready    bool             // the policies loaded
	embedded bool             // they are the embedded defaults, whose answers the labels say
	// devKeyFile is the key verdict token keeps, when the demo trusts it.
	devKeyFile string
}

// print writes ready-to-paste requests against the demo server: an
// allowed and a denied decision with a fresh viewer token, an anonymous
// one, and a forward-auth check. Their labels say the answers of the
// embedded policies; other policies' answers are theirs to give.
func (d demo) print(w io.Writer) error {
	addr, m, devKeyFile := d.addr, d.minter, d.devKeyFile
	viewer, err := m.Mint("alice", map[string]any{"roles": []string{"viewer"}}, demoTTL, time.Now())
	if err != nil {
		return err
	}
	base := "http://" + curlHost(addr)
	var b strings.Builder
	fmt.Fprintf(&b, `
Verdict is serving a DEMO: no --config, so the only tokens it trusts are
development tokens (iss %q, aud %q), signed by a key generated
at start and never stored. NOT FOR PRODUCTION. Decisions are logged to stdout.
`, devtoken.Issuer, devtoken.Audience)
	if devKeyFile != "" {
		fmt.Fprintf(&b, "It also trusts the key verdict token keeps (%s):\nthe development tokens it mints work here.\n", devKeyFile)
	} else {
		b.WriteString("Tokens from verdict token are signed by its own key: run it once, then restart the\ndemo, and the demo trusts them too.\n")
	}
	if tcp, ok := addr.(*net.TCPAddr); ok && !tcp.IP.IsLoopback() {
		fmt.Fprintf(&b, "\nIt listens on %s, beyond this machine: anyone who can reach it can ask it,\nread /v1/status and /metrics. Use --addr 127.0.0.1:PORT unless that is what you want.\n", addr)
	}
	if !d.ready {
		b.WriteString("\nThe policies did not load (see the log above); every decision will be not_ready.\n")
	}
	labels := [4]string{"allow: a viewer may read orders", "deny: a viewer may not delete orders",
		"allow, anonymous: the catalog is public", "forward-auth, as nginx, Caddy or Traefik would ask (200 with X-Verdict-* headers)"}
	intro := "Try it"
	if !d.embedded {
		labels = [4]string{"alice, a viewer, asks to read orders", "alice asks to delete orders",
			"anonymous, asks to read the catalog", "forward-auth, as nginx, Caddy or Traefik would ask"}
		intro = "Ask your policies"
	}
	fmt.Fprintf(&b, `
%[4]s (the token is alice, role viewer, valid for %[1]s):

  # %[5]s
  curl -s %[2]s/v1/decide -H 'Content-Type: application/json' -d '{"token":"%[3]s","action":"orders:read"}'

  # %[6]s
  curl -s %[2]s/v1/decide -H 'Content-Type: application/json' -d '{"token":"%[3]s","action":"orders:delete"}'

  # %[7]s
  curl -s %[2]s/v1/decide -H 'Content-Type: application/json' -d '{"action":"catalog:read"}'

  # %[8]s
  curl -si %[2]s/v1/check -H 'Authorization: Bearer %[3]s' -H 'X-Forwarded-Method: GET' -H 'X-Forwarded-Uri: /orders/42'

`, demoTTL, base, viewer, intro, labels[0], labels[1], labels[2], labels[3])
	_, err = io.WriteString(w, b.String())
	return err
}

// curlHost is addr as a client reaches it: an unspecified listen address
// (0.0.0.0, ::) is reached on loopback.
func curlHost(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok {
		return addr.String()
	}
	ip := tcp.IP
	switch {
	case ip == nil || ip.IsUnspecified() && ip.To4() != nil:
		ip = net.IPv4(127, 0, 0, 1)
	case ip.IsUnspecified():
		ip = net.IPv6loopback
	}
	return net.JoinHostPort(ip.String(), fmt.Sprint(tcp.Port))
}
