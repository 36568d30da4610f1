package server

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener accepts at most n connections open at once. At the limit
// it first closes the oldest connection not yet served (no request read
// yet: a TLS handshake or HTTP/2 preface not finished, a request's headers
// not sent), then the connection idle longest (http.Server's ConnState
// tells it which), so that clients that connect and send nothing, or asked
// once and went quiet, cannot shut everyone else out; and so that
// connections that send nothing evict each other before a connection that
// serves (a request sent on the idle one closed just then fails: the
// longest idle is the least likely to be in use); only when every connection is busy does
// Accept wait for one to close (new ones queue in the kernel's backlog).
//
// A listener told of its calls (trackCalls, callStarted, callEnded) counts
// a connection busy only while a call on it is being decided, its request
// read: a connection whose calls are all still waiting for their
// client's bytes is closed as an idle one, those that never had a call
// decided first. Without that, connections that each keep one call open
// and send nothing for it filled the bound and shut new clients out.
//
// Unlike x/net's netutil.LimitListener,
// a TCP connection keeps its type's
// methods (CloseWrite): an http.Server that answers 431 to oversized
// headers half-closes and lets the client read the answer, where a plain
// close reset the connection under it.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	unserved map[net.Conn]time.Time // connections no request was read on yet, since when
	idle     map[net.Conn]time.Time // keep-alive connections waiting for a request, since when
	evicted  atomic.Uint64          // connections closed to make room (unserved or idle)

	// With trackCalls: connections open and served, and whether a call
	// on them has been decided; and how many calls each is deciding.
	trackCalls bool
	served     map[net.Conn]bool
	deciding   map[net.Conn]int
}

// open is how many connections are open now.
func (l *limitListener) open() int { return len(l.slots) }

// closedToMakeRoom is how many connections were closed to make room.
func (l *limitListener) closedToMakeRoom() int { return int(l.evicted.Load()) }

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}), unserved: map[net.Conn]time.Time{}, idle: map[net.Conn]time.Time{},
		served: map[net.Conn]bool{}, deciding: map[net.Conn]int{}}
}

// connState is an http.Server's ConnState: it keeps the sets of
// connections not yet served and idle.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.unserved, c)
	switch st {
	case http.StateNew:
		delete(l.idle, c)
		l.unserved[c] = time.Now()
	case http.StateIdle:
		l.idle[c] = time.Now()
		if l.trackCalls {
			l.markServed(c)
		}
	case http.StateActive:
		if !l.trackCalls {
			delete(l.idle, c)
			return
		}
		// Waiting for its calls' bytes is idle until one is decided.
		l.markServed(c)
		if _, ok := l.idle[c]; !ok && l.deciding[c] == 0 {
			l.idle[c] = time.Now()
		}
	default: // closed, hijacked
		delete(l.idle, c)
		delete(l.served, c)
		delete(l.deciding, c)
	}
}

// markServed records c as open and served, keeping whether it has had a
// call decided.
func (l *limitListener) markServed(c net.Conn) {
	if _, ok := l.served[c]; !ok {
		l.served[c] = false
	}
}

// callStarted tells a listener that tracks calls that a call on c is
// being decided: c is busy until callEnded.
func (l *limitListener) callStarted(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, open := l.served[c]; !open {
		return
	}
	l.served[c] = true
	l.deciding[c]++
	delete(l.idle, c)
}

// callEnded tells a listener that tracks calls that a call on c has been
// answered.
func (l *limitListener) callEnded(c net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, ok := l.deciding[c]
	if !ok {
		return // closed meanwhile
	}
	if n > 1 {
		l.deciding[c] = n - 1
		return
	}
	delete(l.deciding, c)
	l.idle[c] = time.Now()
}

// closeIdle closes the oldest connection not yet served, or else the
// connection idle longest, if there is one.
func (l *limitListener) closeIdle() {
	l.mu.Lock()
	victim := oldest(l.unserved)
	if victim == nil && l.trackCalls {
		// Those that never had a call decided first.
		victim = oldestWhere(l.idle, func(c net.Conn) bool { return !l.served[c] })
	}
	if victim == nil {
		victim = oldest(l.idle)
	}
	delete(l.unserved, victim)
	delete(l.idle, victim)
	l.mu.Unlock()
	if victim != nil {
		l.evicted.Add(1)
		if tc, ok := victim.(*tls.Conn); ok {
			// Not the TLS close, whose close_notify waits up to 5 s on a
			// client that does not read, holding up Accept.
			victim = tc.NetConn()
		}
		_ = victim.Close()
	}
}

// unservedCount is how many connections no request was read on yet.
func (l *limitListener) unservedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.unserved)
}

// oldest is the connection of set with the earliest time, or nil.
func oldest(set map[net.Conn]time.Time) net.Conn {
	return oldestWhere(set, func(net.Conn) bool { return true })
}

// oldestWhere is the connection of set with the earliest time among those
// keep reports true for, or nil.
func oldestWhere(set map[net.Conn]time.Time, keep func(net.Conn) bool) net.Conn {
	var c net.Conn
	var since time.Time
	for k, t := range set {
		if (c == nil || t.Before(since)) && keep(k) {
			c, since = k, t
		}
	}
	return c
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
