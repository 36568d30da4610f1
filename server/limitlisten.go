package server

import (
	"context"
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
// longest idle is the least likely to be in use); only when every
// connection is busy does Accept wait for one to close (new ones queue in
// the kernel's backlog).
//
// It is told of the calls on its connections (see connContext and
// reportCalls): a connection counts busy only while a call on it is being
// decided, not while its calls wait for their client (a read of a body or
// gRPC message not all sent, a write of an answer the client does not
// take) or for changes to send (a health Watch): a connection whose calls
// all wait is closed as an idle one, idle since its last wait began, and
// those that never had a call answered first. Without that, connections
// that each keep a call open and send its bytes slowly, or not at all, or
// take no answers, filled the bound and shut new clients out.
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
	served   map[net.Conn]bool      // connections open and served: whether a call on them was answered
	// deciding is, for each served connection, how many calls on it are
	// deciding less how many waits within them (for the client's bytes,
	// or to take an answer) are under way: at most 0 is idle.
	deciding map[net.Conn]int
	// closing holds the connections closed to make room until the server
	// reports them closed: they are not served, idle nor deciding again.
	closing map[net.Conn]bool
}

// open is how many connections are open now.
func (l *limitListener) open() int { return len(l.slots) }

// closedToMakeRoom is how many connections were closed to make room.
func (l *limitListener) closedToMakeRoom() int { return int(l.evicted.Load()) }

func newLimitListener(l net.Listener, n int) *limitListener {
	return &limitListener{Listener: l, slots: make(chan struct{}, n), done: make(chan struct{}), unserved: map[net.Conn]time.Time{}, idle: map[net.Conn]time.Time{},
		served: map[net.Conn]bool{}, deciding: map[net.Conn]int{}, closing: map[net.Conn]bool{}}
}

// connState is an http.Server's ConnState: it keeps the sets of
// connections not yet served and idle.
func (l *limitListener) connState(c net.Conn, st http.ConnState) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing[c] && st != http.StateClosed && st != http.StateHijacked {
		return
	}
	delete(l.unserved, c)
	switch st {
	case http.StateNew:
		delete(l.idle, c)
		l.unserved[c] = time.Now()
	case http.StateIdle:
		l.idle[c] = time.Now()
		l.markServed(c)
	case http.StateActive:
		// Reading a request is idle until one of its calls is decided.
		l.markServed(c)
		if _, ok := l.idle[c]; !ok && l.deciding[c] <= 0 {
			l.idle[c] = time.Now()
		}
	default: // closed, hijacked
		delete(l.idle, c)
		delete(l.served, c)
		delete(l.deciding, c)
		delete(l.closing, c)
	}
}

// markServed records c as open and served, keeping whether it has had a
// call answered.
func (l *limitListener) markServed(c net.Conn) {
	if _, ok := l.served[c]; !ok {
		l.served[c] = false
	}
}

// addDeciding adds delta to what c is deciding (see deciding): c is busy
// while that is above 0, idle from when it is no longer; answered records
// that c has had a call answered. It leaves a connection not open, or
// closing, alone.
func (l *limitListener) addDeciding(c net.Conn, delta int, answered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, open := l.served[c]; !open {
		return
	}
	if answered {
		l.served[c] = true
	}
	was := l.deciding[c]
	n := was + delta
	l.deciding[c] = n
	switch {
	case n > 0:
		delete(l.idle, c)
	case was > 0:
		l.idle[c] = time.Now()
	}
}

// connKey holds, in a request's context, its connection and the
// limitListener that accepted it.
type connKey struct{}

// listenerConn is a connection accepted by a limitListener, as the
// requests on it see it (connOf).
type listenerConn struct {
	l *limitListener
	c net.Conn
	// watches counts the health Watch streams open on c (see
	// maxWatchesPerConn).
	watches atomic.Int32
}

// connContext is an http.Server's ConnContext: it gives the requests on c
// their listenerConn.
func (l *limitListener) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, &listenerConn{l: l, c: c})
}

// connOf is the connection a request's context came from, or nil (a
// handler not served from a limitListener: a test, an embedder).
func connOf(ctx context.Context) *listenerConn {
	lc, _ := ctx.Value(connKey{}).(*listenerConn)
	return lc
}

// The calls on a connection: started when its handler starts, waiting and
// resumed around each read of its client's bytes (readBody) and each write
// of its answer (callWriter), ended once answered. Each does nothing on a
// nil listenerConn.
func (lc *listenerConn) callStarted() { lc.add(1, false) }
func (lc *listenerConn) callWaiting() { lc.add(-1, false) }
func (lc *listenerConn) callResumed() { lc.add(1, false) }
func (lc *listenerConn) callEnded()   { lc.add(-1, true) }

func (lc *listenerConn) add(delta int, answered bool) {
	if lc != nil {
		lc.l.addDeciding(lc.c, delta, answered)
	}
}

// reportCalls tells the listener each request of h came from of its
// call (see limitListener), and of the writes of its answer.
func reportCalls(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lc := connOf(r.Context())
		if lc == nil {
			h.ServeHTTP(w, r)
			return
		}
		lc.callStarted()
		defer lc.callEnded()
		h.ServeHTTP(&callWriter{ResponseWriter: w, lc: lc}, r)
	})
}

// callWriter is the ResponseWriter of a call reportCalls reports: a write
// or flush that blocks does so on a client that does not take its answer
// (a full socket, an HTTP/2 window of zero), and is not deciding.
type callWriter struct {
	http.ResponseWriter
	lc *listenerConn
}

func (w *callWriter) Write(p []byte) (int, error) {
	w.lc.callWaiting()
	defer w.lc.callResumed()
	return w.ResponseWriter.Write(p)
}

// Flush flushes, as grpc-go's handler needs (http.Flusher).
func (w *callWriter) Flush() { _ = w.FlushError() }

// FlushError flushes, for http.ResponseController.
func (w *callWriter) FlushError() error {
	w.lc.callWaiting()
	defer w.lc.callResumed()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the writer under it.
func (w *callWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// closeIdle closes the oldest connection not yet served, or else the
// connection idle longest, if there is one.
func (l *limitListener) closeIdle() {
	l.mu.Lock()
	victim := oldest(l.unserved)
	if victim == nil {
		// Those that never had a call answered first.
		victim = oldestWhere(l.idle, func(c net.Conn) bool { return !l.served[c] })
	}
	if victim == nil {
		victim = oldest(l.idle)
	}
	delete(l.unserved, victim)
	delete(l.idle, victim)
	delete(l.served, victim)
	delete(l.deciding, victim)
	if victim != nil {
		l.closing[victim] = true
	}
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
