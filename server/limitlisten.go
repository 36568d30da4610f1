package server

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener accepts at most n connections open at once. At the limit
// it first closes the connection idle longest (idle tells it which:
// http.Server's ConnState), so that clients that asked once and went quiet
// cannot shut everyone else out (a request sent on it just then fails:
// the longest idle is the least likely to be in use); only when every connection is busy does
// Accept wait for one to close (new ones queue in the kernel's backlog).
// Unlike x/net's netutil.LimitListener, a TCP connection keeps its type's
// methods (CloseWrite): an http.Server that answers 431 to oversized
// headers half-closes and lets the client read the answer, where a plain
// close reset the connection under it.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu         sync.Mutex
	idle       map[net.Conn]time.Time // keep-alive connections waiting for a request, since when
	idleClosed atomic.Uint64          // idle connections closed to make room
}

// open is how many connections are open now.
func (l *limitListener) open() int { return len(l.slots) }

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}), idle: map[net.Conn]time.Time{}}
}

// connState is an http.Server's ConnState: it keeps the set of idle
// connections.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st == http.StateIdle {
		l.idle[c] = time.Now()
	} else {
		delete(l.idle, c)
	}
}

// closeIdle closes the connection idle longest, if there is one.
func (l *limitListener) closeIdle() {
	l.mu.Lock()
	var victim net.Conn
	var since time.Time
	for c, t := range l.idle {
		if victim == nil || t.Before(since) {
			victim, since = c, t
		}
	}
	delete(l.idle, victim)
	l.mu.Unlock()
	if victim != nil {
		l.idleClosed.Add(1)
		_ = victim.Close()
	}
}

// Accept waits for a connection, then takes a free slot for it: at the
// limit it closes an idle connection for one, and while every connection
// is busy it waits (the connection accepted, not yet served), closing the
// first that turns idle.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if !l.takeSlot() {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	release := sync.OnceFunc(func() { <-l.slots })
	if tc, ok := c.(*net.TCPConn); ok {
		return &limitedTCPConn{TCPConn: tc, release: release}, nil
	}
	return &limitedConn{Conn: c, release: release}, nil
}

// takeSlot takes a slot, closing idle connections to free one; it returns
// false when the listener is closed first.
func (l *limitListener) takeSlot() bool {
	select {
	case l.slots <- struct{}{}:
		return true
	default:
	}
	tick := time.NewTicker(idlePoll)
	defer tick.Stop()
	for {
		l.closeIdle()
		select {
		case l.slots <- struct{}{}:
			return true
		case <-l.done:
			return false
		case <-tick.C:
		}
	}
}

// idlePoll is how often Accept, at the limit, looks again for an idle
// connection to close.
const idlePoll = 50 * time.Millisecond

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitedTCPConn gives its slot back when it closes.
type limitedTCPConn struct {
	*net.TCPConn
	release func()
}

func (c *limitedTCPConn) Close() error {
	defer c.release()
	return c.TCPConn.Close()
}

// limitedConn is limitedTCPConn for any other connection.
type limitedConn struct {
	net.Conn
	release func()
}

func (c *limitedConn) Close() error {
	defer c.release()
	return c.Conn.Close()
}
