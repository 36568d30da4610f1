package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// The ext_authz listener: net/http's HTTP/2 server, under the bounds of
// addr's, in front of grpc-go's gRPC server.

// grpcMessagePrefix is the length of what precedes each gRPC message on
// the wire: a compressed flag and a 4-byte length.
const grpcMessagePrefix = 5

// grpcMaxMessage is the largest request message a call may carry:
// Limits.MaxHeaderBytes + Limits.MaxBodyBytes (a CheckRequest carries the
// protected request's headers, and its body when Envoy is told to send
// it).
func (s *Server) grpcMaxMessage() int64 {
	return int64(s.limits.MaxHeaderBytes) + s.limits.MaxBodyBytes
}

// grpcServer builds the gRPC server of the ext_authz service and the
// health service beside it. It is served through extAuthzFront, never on
// a listener of its own: the connections, their streams, headers and
// timeouts are net/http's, as on addr.
func (s *Server) grpcServer() (*grpc.Server, *healthService) {
	maxMsg := int(s.grpcMaxMessage())
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxSendMsgSize(maxMsg),
		grpc.ChainUnaryInterceptor(s.refusedUnary),
		grpc.ChainStreamInterceptor(refusedStream),
		// Stop returns only once the cut-off calls' handlers have, so that
		// their decisions reach the decision log before it closes.
		grpc.WaitForHandlers(true),
	}
	if s.tls != nil {
		opts = append(opts,
			grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
				// Check answers an untrusted peer with a deny itself: a gRPC
				// error is what Envoy's failure_mode_allow lets through.
				if info.FullMethod != authv3.Authorization_Check_FullMethodName {
					if err := s.grpcPeerStillTrusted(ctx); err != nil {
						return nil, err
					}
				}
				return h(ctx, req)
			}),
			grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
				if err := s.grpcPeerStillTrusted(ss.Context()); err != nil {
					return err
				}
				return h(srv, ss)
			}))
	}
	gs := grpc.NewServer(opts...)
	authv3.RegisterAuthorizationServer(gs, &extAuthz{s: s})
	hs := newHealthService(s)
	healthpb.RegisterHealthServer(gs, hs)
	return gs, hs
}

// extAuthzFront serves gs on the ext_authz listener. It reads each call's
// request message itself, as addr reads a body (readBody: within
// Limits.MaxBodyBytesInFlight, reserving only what has arrived), up to
// grpcMaxMessage and its prefix for a Check and bodyProbe for anything
// else (a health request names a service), and hands gs the bytes read,
// giving their room back once gs has copied them: grpc-go's own transport
// kept every DATA frame a client sent as a buffer of its own (a 1-byte
// frame cost some 50 bytes: one connection sending 32 messages a byte at a
// time held 200 MiB), under no bound across calls. A message not read
// (too large, broken off, compressed, no room) reaches gs as an empty one
// with the error in its context (refusedMessage): Check answers it with a
// deny, 413, 400 or 503, never with a gRPC error, which failure_mode_allow
// would let through; other methods with the status that matches. A
// Check whose message was read takes its decision slot here, before the
// message is decoded (here or by gs), as a body on addr does. The plain
// Check calls Envoy makes are answered here (serveCheck).
//
// The message must arrive within Limits.WriteTimeout of the call's
// headers, and every call but a health Watch (a stream meant to last) is
// answered within it too: its context ends then, or at the client's
// earlier grpc-timeout (Envoy sends 200 ms), both from its headers. At
// most maxWatches Watch streams are open at once, each for
// Server.watchLifetime at most: a Watch holds a connection open (it is
// never idle) and some 50 KiB, and one whose client stops reading would
// hold them for good.
func (s *Server) extAuthzFront(gs *grpc.Server) http.Handler {
	x := &extAuthz{s: s}
	watches := make(chan struct{}, maxWatches)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ProtoMajor != 2 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			gs.ServeHTTP(w, r) // answers what is not a gRPC call with an HTTP error
			return
		}
		ctx := r.Context()
		check := r.URL.Path == authv3.Authorization_Check_FullMethodName
		watch := r.URL.Path == healthpb.Health_Watch_FullMethodName
		if !watch {
			timeout := s.limits.WriteTimeout
			if d, ok := parseGRPCTimeout(r.Header.Get("Grpc-Timeout")); ok {
				timeout = min(timeout, d)
			}
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		if s.tracer != nil {
			ctx = traceContext.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		var slot *callSlot
		if check {
			slot = &callSlot{}
			ctx = context.WithValue(ctx, callSlotKey{}, slot)
			defer func() {
				if release := slot.take(); release != nil {
					release() // Check was never reached
				}
			}()
		}
		r = r.WithContext(ctx)
		var body requestBody
		var err error
		switch enc := r.Header.Get("Grpc-Encoding"); {
		case enc != "" && enc != "identity":
			// Envoy sends none; a compressed message would grow past its
			// room once decompressed.
			err = authz.Refusef(authz.ErrInvalidRequest, "compressed messages (grpc-encoding %q) are not accepted: send them uncompressed", printable.Cut(enc, 32))
		case check:
			body, err = s.readBody(w, r, s.grpcMaxMessage()+grpcMessagePrefix)
		default:
			body, err = s.readBody(w, r, bodyProbe)
		}
		if errors.Is(err, errOverloaded) {
			s.metrics.shed.WithLabelValues(string(apiExtAuthz)).Inc()
		}
		release := sync.OnceFunc(func() { s.putBody(body) })
		defer release()
		if check && err == nil {
			// A Check's message is decoded under its decision slot, as a
			// body on addr is: a message of 128 KiB decodes to tens of
			// times that (70 for a header_map of empty entries), and
			// decoded messages waiting for a slot were bounded by nothing
			// (16 connections of 32 calls held 860 MiB). Check takes the
			// slot over (callSlot).
			slot.release, err = s.admit(ctx, apiExtAuthz)
		}
		if check && x.serveCheck(w, r, body.data, err, release) {
			return
		}
		lc := connOf(ctx)
		if err == nil && watch && lc != nil {
			if lc.watches.Add(1) > maxWatchesPerConn {
				err = frontErr(errOverloaded, "too many health Watch streams on one connection (%d)", maxWatchesPerConn)
			}
			defer lc.watches.Add(-1)
		}
		if err == nil && watch {
			select {
			case watches <- struct{}{}:
				defer func() { <-watches }()
				// A Watch waits for changes to send: it does not keep its
				// connection busy (see limitListener).
				lc.callWaiting()
				defer lc.callResumed()
				// Past its request (bounded by runExtAuthz), a Watch lasts
				// until its lifetime resets its stream (a write blocked on
				// a client that stopped reading included).
				_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.watchLifetime))
			default:
				err = frontErr(errOverloaded, "too many health Watch streams at once (%d): try again, or ask Check", maxWatches)
			}
		}
		data := body.data
		if err != nil {
			r = r.WithContext(context.WithValue(ctx, refusedMessageKey{}, err))
			data = make([]byte, grpcMessagePrefix)
		}
		r.Body = &releasingReader{r: bytes.NewReader(data), release: release}
		gs.ServeHTTP(w, r)
	})
}

// maxWatches bounds the health Watch streams open at once on the ext_authz
// listener. Envoy and Kubernetes ask Check; Watch is for gRPC clients that
// balance across replicas.
const maxWatches = 64

// maxWatchesPerConn bounds the Watch streams of one connection: a gRPC
// client watches once a connection (twice, for the server and a service),
// and one client holding every Watch slot shut the others out for a
// lifetime. Taking them all now takes maxWatches/maxWatchesPerConn
// connections, each one the connection bound may close as idle.
const maxWatchesPerConn = 2

// watchLifetime is how long a health Watch stream lasts at most: it is
// then reset, and its client watches again.
const watchLifetime = time.Hour

// releasingReader reads a message read by extAuthzFront, and gives its
// room back once it has been read to its end: grpc-go copies it, and a
// Watch lasts. Close gives nothing back: grpc-go closes the body before
// its reader has stopped; extAuthzFront gives the room back once
// ServeHTTP has returned, when grpc-go has stopped reading.
type releasingReader struct {
	r       *bytes.Reader
	release func()
}

func (rr *releasingReader) Read(p []byte) (int, error) {
	n, err := rr.r.Read(p)
	if err != nil {
		rr.release() // the reader reads no more once it has an error
	}
	return n, err
}

func (rr *releasingReader) Close() error { return nil }

// callSlot is the decision slot extAuthzFront takes for a Check call
// before its message is decoded: Check takes it over, and extAuthzFront
// gives it back itself when Check was never reached.
type callSlot struct {
	mu      sync.Mutex
	release func()
}

// callSlotKey holds a Check call's *callSlot in its context.
type callSlotKey struct{}

// takeCallSlot hands over the release of the decision slot extAuthzFront
// took for the call, once; nil when it took none.
func takeCallSlot(ctx context.Context) func() {
	slot, _ := ctx.Value(callSlotKey{}).(*callSlot)
	return slot.take()
}

// take returns the slot's release and forgets it; nil when there is none
// (a nil slot included) or it was taken.
func (c *callSlot) take() func() {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	release := c.release
	c.release = nil
	return release
}

// refusedMessageKey holds, in a call's context, why extAuthzFront did not
// read its request message.
type refusedMessageKey struct{}

// refusedMessage is why the call's request message was not read, or nil.
func refusedMessage(ctx context.Context) error {
	err, _ := ctx.Value(refusedMessageKey{}).(error)
	return err
}

// refusedUnary answers a unary call whose message was not read: Check with
// a deny (see extAuthzResponse), any other method with its gRPC status.
func (s *Server) refusedUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	err := refusedMessage(ctx)
	if err == nil {
		return h(ctx, req)
	}
	if info.FullMethod == authv3.Authorization_Check_FullMethodName {
		d := authz.Deny(err)
		return s.extAuthzResponse(&d, err, false), nil
	}
	return nil, refusedStatus(err)
}

// refusedStream ends a streaming call whose message was not read.
func refusedStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := refusedMessage(ss.Context()); err != nil {
		return refusedStatus(err)
	}
	return h(srv, ss)
}

// refusedStatus is the gRPC status of a message not read.
func refusedStatus(err error) error {
	code, _ := answer(forwardAuth, authz.Decision{}, err, false)
	return status.Error(grpcCode(code), errorMessage(err))
}

// healthService is the standard gRPC health service, serving for "" (the
// server) and ExtAuthzService exactly when the server is ready (a policy is
// loaded, and the source and key sets are fresh: /health/ready's rule). A
// Check reads readiness when it is asked; Watch streams follow it within
// healthPollInterval (run keeps it current). After shutdown begins every
// status is NOT_SERVING and Watch streams end, so that they do not hold up
// a graceful stop.
type healthService struct {
	*health.Server
	s    *Server
	done chan struct{} // closed when shutdown begins
}

func newHealthService(s *Server) *healthService {
	h := &healthService{Server: health.NewServer(), s: s, done: make(chan struct{})}
	h.refresh()
	return h
}

// refresh sets the services' status from the server's readiness.
func (h *healthService) refresh() {
	st := healthpb.HealthCheckResponse_SERVING
	if _, err := h.s.readiness(); err != nil {
		st = healthpb.HealthCheckResponse_NOT_SERVING
	}
	h.SetServingStatus("", st)
	h.SetServingStatus(ExtAuthzService, st)
}

// Check answers with the readiness of now.
func (h *healthService) Check(ctx context.Context, in *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.refresh()
	return h.Server.Check(ctx, in)
}

// Watch streams status changes until the client goes or shutdown begins.
func (h *healthService) Watch(in *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	h.refresh()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	go func() {
		select {
		case <-h.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	return h.Server.Watch(in, &watchStream{Health_WatchServer: stream, ctx: ctx})
}

type watchStream struct {
	healthpb.Health_WatchServer
	ctx context.Context
}

func (w *watchStream) Context() context.Context { return w.ctx }

// run keeps the status current until ctx is done.
func (h *healthService) run(ctx context.Context) {
	t := time.NewTicker(healthPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			h.refresh()
		}
	}
}

// shutdown makes every status NOT_SERVING for good and ends Watch streams.
func (h *healthService) shutdown() {
	h.Server.Shutdown()
	close(h.done)
}

// extRun is the ext_authz listener while Run serves it. Its zero value
// (done nil) stands for none served.
type extRun struct {
	gs       *grpc.Server
	hs       *healthService
	http     *http.Server
	handlers handlerCount       // the front's, which answers Check itself
	cutCalls context.CancelFunc // cancels the calls' contexts
	done     chan struct{}      // closed when Serve returns; nil when none is served
	err      error              // Serve's error, set before done is closed
	cancel   context.CancelFunc
	polled   chan struct{} // closed when the health poller has returned
	log      *slog.Logger
	grace    time.Duration
}

// runExtAuthz serves ext_authz on ln, when ln is not nil, and keeps the
// health service current; stop ends both. The listener serves HTTP/2
// only (over TLS with Options.TLS, with prior knowledge without), under
// addr's bounds: Limits.MaxConnections connections (an idle one closed to
// make room), 32 calls each, their headers' size and timeouts.
func (s *Server) runExtAuthz(ln net.Listener) *extRun {
	r := &extRun{log: s.log, grace: s.grace}
	if ln == nil {
		return r
	}
	r.gs, r.hs = s.grpcServer()
	r.http = s.httpServer(r.handlers.track(reportCalls(s.extAuthzFront(r.gs))))
	// A call's request message must arrive within Limits.WriteTimeout of
	// its headers; past its context (extAuthzFront), a call has a second
	// to write its answer.
	r.http.ReadTimeout = s.limits.WriteTimeout
	r.http.WriteTimeout = s.limits.WriteTimeout + time.Second
	var protos http.Protocols
	if s.tls != nil {
		protos.SetHTTP2(true)
		r.http.TLSConfig = s.tls.config("h2")
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	r.http.Protocols = &protos
	var base context.Context
	base, r.cutCalls = context.WithCancel(context.Background())
	r.http.BaseContext = func(net.Listener) context.Context { return base }
	limited := newLimitListener(ln, s.limits.MaxConnections)
	s.extConns.Store(limited)
	r.http.ConnState = limited.connState
	r.http.ConnContext = limited.connContext
	r.done = make(chan struct{})
	go func() {
		if s.tls != nil {
			r.err = r.http.ServeTLS(limited, "", "")
		} else {
			r.err = r.http.Serve(limited)
		}
		close(r.done)
	}()
	var pctx context.Context
	pctx, r.cancel = context.WithCancel(context.Background())
	r.polled = make(chan struct{})
	go func() {
		defer close(r.polled)
		r.hs.run(pctx)
	}()
	return r
}

// stop marks the health service NOT_SERVING, then stops the listener: at
// once when immediate, else gracefully (in-flight calls finish) until ctx
// is done, and at once after that. It waits for Serve and the health
// poller to return.
func (r *extRun) stop(ctx context.Context, immediate bool) error {
	if r.done == nil {
		return nil
	}
	r.cancel()
	<-r.polled
	r.hs.shutdown()
	if immediate {
		r.cutOff()
		return nil
	}
	if err := r.http.Shutdown(ctx); err != nil {
		r.cutOff()
		return fmt.Errorf("server: shutdown: in-flight ext_authz calls did not finish: %w", err)
	}
	// Shutdown does not wait for a handler whose client reset its
	// stream (Envoy does at its deadline): it may still be deciding.
	r.cutOff()
	if r.err != nil && !errors.Is(r.err, http.ErrServerClosed) {
		return fmt.Errorf("server: ext_authz: %w", r.err)
	}
	return nil
}

// cutOff stops the listener at once: it cancels the calls' contexts (the
// engine stops evaluating when its context ends), closes the connections
// and waits for the calls' handlers (the front's, and grpc-go's:
// grpc.WaitForHandlers) and Serve. It waits up to the server's grace
// (handlerGrace) for them, as Run does for HTTP handlers, and logs when a
// handler is still running.
func (r *extRun) cutOff() {
	r.cutCalls()
	r.http.Close()
	stopped := make(chan struct{})
	go func() {
		r.gs.Stop()
		<-r.done
		close(stopped)
	}()
	if !r.handlers.wait(r.grace) || !closedWithin(stopped, r.grace) {
		r.log.LogAttrs(context.Background(), slog.LevelError, "shutdown: ext_authz handlers still running after they were cut off",
			slog.Duration("waited", r.grace))
	}
}

// grpcPeerStillTrusted is peerStillTrusted for gRPC calls: a connection
// whose client certificate no longer verifies under the client CAs in
// service (they changed since its handshake) is refused call by call, as
// a new connection with it would be at its handshake: Check answers it
// with a 403 deny, other calls with Unauthenticated.
func (s *Server) grpcPeerStillTrusted(ctx context.Context) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || s.tls.chainStillVerified(ti.State.PeerCertificates) {
		return nil
	}
	return status.Error(codes.Unauthenticated, "the client certificate no longer verifies under the client CAs in service: connect again")
}
