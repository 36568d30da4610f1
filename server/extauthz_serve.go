package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// The gRPC server that carries ext_authz, its health service and its
// lifecycle beside the HTTP listener.

// grpcServer builds the gRPC server of the ext_authz service and the
// health service beside it. Messages are bounded by Limits.MaxHeaderBytes
// + Limits.MaxBodyBytes (a CheckRequest carries the protected request's
// headers, and its body when Envoy is told to send it), the gRPC request's
// own headers by MaxHeaderBytes, the TLS handshake by ReadHeaderTimeout,
// idle connections by IdleTimeout, a connection's concurrent calls by
// MaxStreams, and every call but a health Watch, from its headers to
// its answer, by WriteTimeout (callDeadline).
func (s *Server) grpcServer() (*grpc.Server, *healthService) {
	maxMsg := int(s.limits.MaxHeaderBytes) + int(s.limits.MaxBodyBytes)
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(maxMsg),
		grpc.MaxSendMsgSize(maxMsg),
		grpc.MaxHeaderListSize(uint32(s.limits.MaxHeaderBytes)),
		grpc.ConnectionTimeout(s.limits.ReadHeaderTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.limits.IdleTimeout}),
		grpc.MaxConcurrentStreams(MaxStreams),
		grpc.InTapHandle(callDeadline(s.limits.WriteTimeout)),
		grpc.StreamInterceptor(watchRequestWithin(s.limits.WriteTimeout)),
		// Stop returns only once the cut-off calls' handlers have, so that
		// their decisions reach the decision log before it closes.
		grpc.WaitForHandlers(true),
	}
	if s.tls != nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(s.tls.config("h2"))),
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

// callDeadline gives every call but a health Watch (a stream meant to
// last) a deadline d from its headers, or keeps the client's earlier one
// (grpc-timeout; Envoy sends 200 ms by default). It is set before the
// message is read, so that it also bounds a client that sends a message's
// length and then holds the rest back: without it, such a call held its
// goroutine and up to a whole message's buffer for as long as the
// connection lived.
func callDeadline(d time.Duration) tap.ServerInHandle {
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		if info.FullMethodName == healthpb.Health_Watch_FullMethodName {
			// A Watch lasts, but its request must arrive within d:
			// watchRequestWithin cancels it otherwise.
			ctx, cancel := context.WithCancel(ctx)
			return context.WithValue(ctx, watchCancelKey{}, cancel), nil
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) <= d {
			return ctx, nil // the client's own (grpc-timeout) comes first
		}
		ctx, cancel := context.WithTimeout(ctx, d)
		// gRPC cancels the call's context when the call ends, which stops
		// this timer too.
		_ = cancel
		return ctx, nil
	}
}

// watchCancelKey holds, in a health Watch's context, the function that
// cancels it.
type watchCancelKey struct{}

// watchRequestWithin gives a health Watch d to receive its request
// message, the part of the call that callDeadline leaves unbounded: a
// client that declared the message and held it back kept the stream, its
// goroutine and its buffer, and held up a graceful stop.
func watchRequestWithin(d time.Duration) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		cancel, ok := ss.Context().Value(watchCancelKey{}).(context.CancelFunc)
		if !ok {
			return handler(srv, ss)
		}
		return handler(srv, &firstRecvWithin{ServerStream: ss, d: d, cancel: cancel})
	}
}

// firstRecvWithin cancels its stream when the first message takes longer
// than d to arrive.
type firstRecvWithin struct {
	grpc.ServerStream
	d        time.Duration
	cancel   context.CancelFunc
	received bool
}

func (s *firstRecvWithin) RecvMsg(m any) error {
	if s.received {
		return s.ServerStream.RecvMsg(m)
	}
	s.received = true
	t := time.AfterFunc(s.d, s.cancel)
	defer t.Stop()
	return s.ServerStream.RecvMsg(m)
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

// cutOff stops the gRPC server at once: Stop closes the connections,
// cancels the calls' contexts and waits for their handlers (the engine
// stops evaluating when its context ends), and Serve returns. It waits up
// to the server's grace (handlerGrace) for both, as Run does for HTTP
// handlers, and logs when a handler is still running.
func (r *extRun) cutOff() {
	done := make(chan struct{})
	go func() {
		r.gs.Stop()
		<-r.done
		close(done)
	}()
	if !closedWithin(done, r.grace) {
		r.log.LogAttrs(context.Background(), slog.LevelError, "shutdown: ext_authz handlers still running after they were cut off",
			slog.Duration("waited", r.grace))
	}
}

// extRun is the ext_authz gRPC server while Run serves it. Its zero value
// (done nil) stands for none served.
type extRun struct {
	gs     *grpc.Server
	hs     *healthService
	done   chan struct{} // closed when Serve returns; nil when none is served
	err    error         // Serve's error, set before done is closed
	cancel context.CancelFunc
	polled chan struct{} // closed when the health poller has returned
	log    *slog.Logger
	grace  time.Duration
}

// runExtAuthz serves ext_authz on ln, when ln is not nil, and keeps the
// health service current; stop ends both.
func (s *Server) runExtAuthz(ln net.Listener) *extRun {
	r := &extRun{log: s.log, grace: s.grace}
	if ln == nil {
		return r
	}
	r.gs, r.hs = s.grpcServer()
	r.done = make(chan struct{})
	go func() {
		r.err = r.gs.Serve(ln)
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

// stop marks the health service NOT_SERVING, then stops the gRPC server:
// at once when immediate, else gracefully (in-flight Checks finish) until
// ctx is done, and at once after that. It waits for Serve and the health
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
	stopped := make(chan struct{})
	go func() {
		r.gs.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-ctx.Done():
		// GracefulStop returns once cutOff has (or is stuck with it).
		r.cutOff()
		return fmt.Errorf("server: shutdown: in-flight ext_authz calls did not finish: %w", ctx.Err())
	}
	<-r.done
	if r.err != nil {
		return fmt.Errorf("server: ext_authz: %w", r.err)
	}
	return nil
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
