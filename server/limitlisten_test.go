package server

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestLimitListenerEvicts: at the bound, the oldest connection not yet
// served is closed first (one that has sent nothing, or not enough to be
// served: such connections make room by closing each other, not a
// connection that serves); then the connection idle longest (the least
// likely to carry a request just then), however often the others went idle
// before it.
func TestLimitListenerEvicts(t *testing.T) {
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
	unserved, unservedPeer := net.Pipe()
	defer unservedPeer.Close()
	l.connState(unserved, http.StateNew) // newest of all, and never served
	l.closeIdle()
	if !pipeClosed(unserved) || pipeClosed(older) || pipeClosed(newer) {
		t.Fatal("the connection not yet served was not the one closed")
	}
	l.closeIdle()
	if !pipeClosed(older) {
		t.Error("the connection idle longest is still open")
	}
	if pipeClosed(newer) {
		t.Error("the connection idle since later was closed")
	}
	if n := l.evicted.Load(); n != 2 {
		t.Errorf("connections closed: %d, want 2", n)
	}
}

// TestLimitListenerCalls: a listener told of its calls closes, at the
// bound, a connection whose calls all wait for their bytes before one
// that has had a call decided (however much longer that one has been
// idle), and never one deciding a call.
func TestLimitListenerCalls(t *testing.T) {
	l := newLimitListener(nil, 3)
	l.trackCalls = true
	pipe := func() net.Conn {
		c, peer := net.Pipe()
		t.Cleanup(func() { peer.Close() })
		l.connState(c, http.StateNew)
		l.connState(c, http.StateActive)
		return c
	}
	decided, deciding := pipe(), pipe()
	l.callStarted(decided)
	l.callEnded(decided)
	l.connState(decided, http.StateIdle)
	l.callStarted(deciding)
	time.Sleep(time.Millisecond)
	stalled := pipe() // a call open, its bytes not sent: newest
	l.closeIdle()
	if !pipeClosed(stalled) || pipeClosed(decided) || pipeClosed(deciding) {
		t.Fatal("the stalled connection was not the one closed")
	}
	l.closeIdle()
	if !pipeClosed(decided) {
		t.Fatal("the idle connection was not closed next")
	}
	l.closeIdle()
	if pipeClosed(deciding) {
		t.Fatal("a connection deciding a call was closed")
	}
	l.callEnded(deciding)
	l.closeIdle()
	if !pipeClosed(deciding) {
		t.Fatal("a connection whose call was answered was not closed")
	}
}

// pipeClosed reports whether c, one end of a net.Pipe whose other end
// nobody reads, is closed (an open one times out writing).
func pipeClosed(c net.Conn) bool {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Write([]byte("x"))
	return errors.Is(err, io.ErrClosedPipe)
}
