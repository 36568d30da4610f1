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

// TestLimitListenerCalls: at the bound, a connection whose calls all wait
// for their client's bytes is closed before one that has had a call
// answered (however much longer that one has been idle), and one that is
// deciding a call never, though another call on it waits.
func TestLimitListenerCalls(t *testing.T) {
	l := newLimitListener(nil, 4)
	pipe := func() (net.Conn, *listenerConn) { return servedPipe(t, l) }
	decided, d := pipe()
	d.callStarted()
	d.callEnded()
	l.connState(decided, http.StateIdle)
	deciding, dg := pipe()
	dg.callStarted() // deciding its first call
	dg.callStarted() // and a second waits for its bytes
	dg.callWaiting()
	time.Sleep(time.Millisecond)
	stalled, s := pipe() // a call whose bytes are not sent: newest
	s.callStarted()
	s.callWaiting()
	reading, rd := pipe() // read its bytes, then waits again: newest
	rd.callStarted()
	rd.callWaiting()
	rd.callResumed()
	rd.callWaiting()
	for _, c := range []net.Conn{stalled, reading} {
		l.closeIdle()
		if !pipeClosed(c) || pipeClosed(decided) || pipeClosed(deciding) {
			t.Fatal("a connection waiting for bytes was not the one closed")
		}
	}
	// Closed, their calls end and the server may report them idle before
	// closed: they are not idle again (closeIdle would pick them again,
	// freeing nothing).
	s.callResumed()
	s.callEnded()
	l.connState(stalled, http.StateIdle)
	rd.callResumed()
	rd.callEnded()
	l.mu.Lock()
	_, back := l.idle[stalled]
	_, back2 := l.idle[reading]
	l.mu.Unlock()
	if back || back2 {
		t.Fatal("a connection closed to make room is idle again")
	}
	l.connState(stalled, http.StateClosed)
	l.connState(reading, http.StateClosed)
	l.closeIdle()
	if !pipeClosed(decided) {
		t.Fatal("the idle connection was not closed next")
	}
	l.closeIdle()
	if pipeClosed(deciding) {
		t.Fatal("a connection deciding a call was closed")
	}
	dg.callStarted() // a third call, answered
	dg.callEnded()
	l.closeIdle()
	if pipeClosed(deciding) {
		t.Fatal("a connection deciding a call was closed when another of its calls was answered")
	}
	dg.callEnded() // the first call answered: the second still waits
	l.closeIdle()
	if !pipeClosed(deciding) {
		t.Fatal("a connection whose calls all wait was not closed")
	}
	l.connState(decided, http.StateClosed)
	l.connState(deciding, http.StateClosed)
	if len(l.idle)+len(l.unserved)+len(l.served)+len(l.deciding)+len(l.closing) != 0 {
		t.Errorf("closed connections still tracked: %d idle, %d unserved, %d served, %d deciding, %d closing",
			len(l.idle), len(l.unserved), len(l.served), len(l.deciding), len(l.closing))
	}
}

// TestLimitListenerWaitsWithinWaits: a call that waits as a whole (a
// health Watch) and waits again within (a write of its answer) leaves its
// connection idle throughout, and a call started beside it busy.
func TestLimitListenerWaitsWithinWaits(t *testing.T) {
	l := newLimitListener(nil, 2)
	c, lc := servedPipe(t, l)
	idle := func() bool { return l.isIdle(c) }
	lc.callStarted() // the Watch
	lc.callWaiting()
	for range 2 { // two of its answers written
		lc.callWaiting()
		if !idle() {
			t.Fatal("busy while a Watch writes")
		}
		lc.callResumed()
	}
	if !idle() {
		t.Fatal("busy while a Watch waits")
	}
	lc.callStarted() // a Check beside it
	if idle() {
		t.Fatal("idle while a call is decided beside a Watch")
	}
	lc.callEnded()
	if !idle() {
		t.Fatal("busy once the call beside the Watch was answered")
	}
}

// servedPipe is one end of a net.Pipe that l serves (a request read on
// it), and its listenerConn; the other end is closed when the test ends.
func servedPipe(t *testing.T, l *limitListener) (net.Conn, *listenerConn) {
	c, peer := net.Pipe()
	t.Cleanup(func() { peer.Close() })
	l.connState(c, http.StateNew)
	l.connState(c, http.StateActive)
	return c, connOf(l.connContext(t.Context(), c))
}

// isIdle reports whether l counts c idle.
func (l *limitListener) isIdle(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.idle[c]
	return ok
}

// pipeClosed reports whether c, one end of a net.Pipe whose other end
// nobody reads, is closed (an open one times out writing).
func pipeClosed(c net.Conn) bool {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
	_, err := c.Write([]byte("x"))
	return errors.Is(err, io.ErrClosedPipe)
}
