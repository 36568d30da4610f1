package server

import (
	"encoding/binary"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/protobuf/proto"

	"github.com/verdict-pdp/verdict/authz"
)

// Check calls answered by the front itself. grpc-go's ServeHTTP, which
// serves every other call, runs three goroutines a call and hands each
// step between them: a Check took twice as long through it as through
// grpc-go's own transport. The front answers the calls Envoy makes (one
// plain protobuf message) itself, with the same service method, and
// leaves whatever else to grpc-go.

// serveCheck answers a Check call, whose request message is msg (prefix
// included) or was refused (refused not nil: answered with a deny), when
// grpc-go would read it exactly so: content-type application/grpc (or
// +proto), a grpc-timeout that parses (extAuthzFront applies it), and one uncompressed message of the
// length its prefix says (extAuthzFront refuses compressed ones); one
// that does not decode is answered with a 400 deny. It calls release once
// msg is decoded. It reports whether it answered; when not, grpc-go is to
// serve the call.
func (x *extAuthz) serveCheck(w http.ResponseWriter, r *http.Request, msg []byte, refused error, release func()) bool {
	if ct := r.Header.Get("Content-Type"); ct != "application/grpc" && ct != "application/grpc+proto" {
		return false
	}
	ctx := r.Context() // its deadline is the client's grpc-timeout's, when earlier (extAuthzFront)
	if v := r.Header.Get("Grpc-Timeout"); v != "" {
		if _, ok := parseGRPCTimeout(v); !ok {
			return false // grpc-go refuses it
		}
	}
	var resp *authv3.CheckResponse
	if refused != nil {
		d := authz.Deny(refused)
		resp = x.s.extAuthzResponse(&d, refused, false)
	} else {
		if len(msg) < grpcMessagePrefix || msg[0] != 0 || int64(binary.BigEndian.Uint32(msg[1:grpcMessagePrefix])) != int64(len(msg)-grpcMessagePrefix) {
			return false
		}
		in := new(authv3.CheckRequest)
		if err := proto.Unmarshal(msg[grpcMessagePrefix:], in); err != nil {
			// Denied here, not left to grpc-go, whose INTERNAL error
			// Envoy's failure_mode_allow lets through: Envoy writes some
			// strings unchecked (a client's TLS SNI in tls_session.sni;
			// in older releases its path and headers), and one that is
			// not UTF-8 fails the whole message.
			release()
			derr := authz.RefuseWith(authz.ErrInvalidRequest, fmt.Errorf("the CheckRequest does not decode: %w", err))
			d := authz.Deny(derr)
			resp = x.s.extAuthzResponse(&d, derr, false)
		} else {
			release() // the decoded request holds copies
			resp, _ = x.Check(peer.NewContext(ctx, callPeer(r)), in)
		}
	}
	writeGRPCAnswer(w, resp)
	return true
}

// writeGRPCAnswer answers a unary call with m and status OK, or with
// INTERNAL when m does not encode (as grpc-go does).
func writeGRPCAnswer(w http.ResponseWriter, m proto.Message) {
	b, err := proto.MarshalOptions{}.MarshalAppend(make([]byte, grpcMessagePrefix, grpcMessagePrefix+proto.Size(m)), m)
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	if err != nil || len(b)-grpcMessagePrefix > math.MaxUint32 {
		// Trailers-only: the status in the headers, no message.
		h.Set("Grpc-Status", "13")
		h.Set("Grpc-Message", "the answer could not be encoded")
		w.WriteHeader(http.StatusOK)
		return
	}
	binary.BigEndian.PutUint32(b[1:grpcMessagePrefix], uint32(len(b)-grpcMessagePrefix))
	// No Content-Length, as grpc-go's answers have none; and not flushed
	// here: the answer is written once the handler has returned, and
	// waiting for a client that takes it slowly (or not at all) is not
	// deciding its call (see limitListener).
	h["Content-Length"] = nil
	h.Set(http.TrailerPrefix+"Grpc-Status", "0")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// callPeer is the gRPC peer of r, as grpc-go gives its handlers: the
// client's address and, over TLS, the connection's state.
func callPeer(r *http.Request) *peer.Peer {
	p := &peer.Peer{}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		p.Addr = net.TCPAddrFromAddrPort(ap)
	}
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		p.LocalAddr = la
	}
	if r.TLS != nil {
		p.AuthInfo = credentials.TLSInfo{State: *r.TLS, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}
	}
	return p
}

// parseGRPCTimeout reads a grpc-timeout header: at most eight digits and a
// unit (H, M, S, m, u, n). A timeout past what a Duration holds is the
// longest one.
func parseGRPCTimeout(v string) (time.Duration, bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	digits := v[:len(v)-1]
	for i := range len(digits) {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil {
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		return math.MaxInt64, true
	}
	return time.Duration(n) * unit, true
}
