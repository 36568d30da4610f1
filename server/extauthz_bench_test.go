package server

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
)

// BenchmarkExtAuthzCheck measures one ext_authz decision on the default
// policy with a cached token — the decision BenchmarkDecideHandler makes
// (role viewer grants orders:read) — asked as Envoy asks it:
//
//   - handler: the Check method with the request decoded from and the
//     answer encoded to protobuf, as the gRPC codec does; no transport, as
//     BenchmarkDecideHandler has none;
//   - bufconn: a gRPC client and server in process over an in-memory
//     connection (HTTP/2 framing, both sides of the call);
//   - loopback: the same over TCP on 127.0.0.1.
func BenchmarkExtAuthzCheck(b *testing.B) {
	f := benchFixture(b, fixtureOptions{})
	tok := f.mint(b, "alice", "viewer")
	req := checkRequest("GET", "/orders/42", map[string]string{
		":authority": "shop.example", ":method": "GET", ":path": "/orders/42", "authorization": "Bearer " + tok,
		"user-agent": "curl/8.5.0", "accept": "*/*", "x-forwarded-proto": "https", "x-request-id": "c0a8e5f2-5b4c-4f1e-9d3a-2b7e8f6a1d0c",
	})
	wantOK := func(b *testing.B, resp *authv3.CheckResponse) {
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			b.Fatalf("not allowed: %v", resp)
		}
	}

	b.Run("handler", func(b *testing.B) {
		svc := &extAuthz{s: f.srv}
		wire, err := proto.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // Envoy always sends a deadline
		defer cancel()
		b.ReportAllocs()
		for b.Loop() {
			in := new(authv3.CheckRequest)
			if err := proto.Unmarshal(wire, in); err != nil {
				b.Fatal(err)
			}
			resp, _ := svc.Check(ctx, in)
			if _, err := proto.Marshal(resp); err != nil {
				b.Fatal(err)
			}
			wantOK(b, resp)
		}
	})

	serve := func(b *testing.B, ln net.Listener, dial func(context.Context, string) (net.Conn, error)) authv3.AuthorizationClient {
		ext := f.srv.runExtAuthz(ln)
		b.Cleanup(func() { ext.stop(context.Background(), true) })
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if dial != nil {
			opts = append(opts, grpc.WithContextDialer(dial))
		}
		conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		return authv3.NewAuthorizationClient(conn)
	}
	call := func(b *testing.B, c authv3.AuthorizationClient) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour) // sent as grpc-timeout, as Envoy does
		defer cancel()
		wantOK(b, mustCheck(b, c, ctx, req)) // connect, warm the caches
		b.ReportAllocs()
		for b.Loop() {
			wantOK(b, mustCheck(b, c, ctx, req))
		}
	}
	b.Run("bufconn", func(b *testing.B) {
		ln := bufconn.Listen(1 << 20)
		call(b, serve(b, ln, func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }))
	})
	b.Run("loopback", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		call(b, serve(b, ln, nil))
	})
	// Envoy's way: many calls at once on one connection.
	b.Run("loopback-parallel", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		c := serve(b, ln, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		wantOK(b, mustCheck(b, c, ctx, req))
		var cs []authv3.AuthorizationClient
		for range 4 {
			conn, err := grpc.NewClient("passthrough:///"+ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { conn.Close() })
			cs = append(cs, authv3.NewAuthorizationClient(conn))
		}
		var n atomic.Int32
		b.ReportAllocs()
		b.SetParallelism(8)
		b.RunParallel(func(pb *testing.PB) {
			c := cs[int(n.Add(1))%len(cs)]
			for pb.Next() {
				resp, err := c.Check(ctx, req)
				if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
					b.Errorf("Check: %v %v", resp, err)
					return
				}
			}
		})
	})
}

func mustCheck(b *testing.B, c authv3.AuthorizationClient, ctx context.Context, req *authv3.CheckRequest) *authv3.CheckResponse {
	resp, err := c.Check(ctx, req)
	if err != nil {
		b.Fatal(err)
	}
	return resp
}
