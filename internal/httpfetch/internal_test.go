package httpfetch

import (
	"errors"
	"net"
	"net/url"
	"syscall"
	"testing"
)

// TestTransportErrorIsStable: a reset connection's error names the local
// (ephemeral) address; the error Get reports leaves it out, and keeps the
// cause for errors.Is and errors.As.
func TestTransportErrorIsStable(t *testing.T) {
	remote := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	reset := func(port int) error {
		return &url.Error{Op: "Get", URL: "http://127.0.0.1:8080/b?sig=secret", Err: &net.OpError{
			Op: "read", Net: "tcp", Source: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}, Addr: remote,
			Err: syscall.ECONNRESET,
		}}
	}
	first, again := transportError(reset(50001)), transportError(reset(50002))
	if want := "read tcp 127.0.0.1:8080: connection reset by peer"; first.Error() != want {
		t.Errorf("error = %q, want %q", first, want)
	}
	if first.Error() != again.Error() {
		t.Errorf("errors differ: %q, %q", first, again)
	}
	var op *net.OpError
	if !errors.Is(first, syscall.ECONNRESET) || !errors.As(first, &op) {
		t.Errorf("error %v lost its cause", first)
	}
}
