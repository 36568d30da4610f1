package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestLimitListenerClosesLongestIdle: at the bound, the connection idle
// longest is the one closed (the least likely to carry a request just
// then), however often the others went idle before it.
func TestLimitListenerClosesLongestIdle(t *testing.T) {
	l := newLimitListener(nil, 2)
	older, olderPeer := net.Pipe()
	newer, newerPeer := net.Pipe()
	defer olderPeer.Close()
	defer newerPeer.Close()
	l.connState(newer, http.StateIdle)
	l.connState(older, http.StateIdle)
	time.Sleep(time.Millisecond)         // a clock may not tell them apart at once
	l.connState(newer, http.StateActive) // a request: newer is in use…
	l.connState(newer, http.StateIdle)   // …and idle again, since after older
	l.closeIdle()
	closed := func(c net.Conn) bool {
		_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond)) // no reader: an open pipe times out
		_, err := c.Write([]byte("x"))
		return errors.Is(err, io.ErrClosedPipe)
	}
	if !closed(older) {
		t.Error("the connection idle longest is still open")
	}
	if closed(newer) {
		t.Error("the connection idle since later was closed")
	}
	if n := l.idleClosed.Load(); n != 1 {
		t.Errorf("idle connections closed: %d, want 1", n)
	}
}
