package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding/gzip"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// h2cCall sends a Check call whose message (prefix included) is body over
// a plain HTTP/2 client, which sends each Write of body as its own DATA
// frame, and returns the answer's message and grpc-status.
func h2cCall(ctx context.Context, tr *http.Transport, addr string, body io.Reader) (*authv3.CheckResponse, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+authv3.Authorization_Check_FullMethodName, body)
	if err != nil {
		return nil, "", err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", err
	}
	st := resp.Trailer.Get("Grpc-Status")
	if st == "" {
		st = resp.Header.Get("Grpc-Status") + " " + resp.Header.Get("Grpc-Message")
	}
	if len(b) < grpcMessagePrefix {
		return nil, st, nil
	}
	out := new(authv3.CheckResponse)
	return out, st, proto.Unmarshal(b[grpcMessagePrefix:], out)
}

// h2cTransport is an HTTP/2 client of plain connections (prior knowledge).
func h2cTransport(t *testing.T) *http.Transport {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// grpcMessage is m on the wire: its prefix, then m.
func grpcMessage(t testing.TB, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return append(binary.BigEndian.AppendUint32([]byte{0}, uint32(len(b))), b...)
}

// h2Client starts an HTTP/2 client on c by hand, its preface and then
// settings, for frames no HTTP/2 client library sends.
func h2Client(t testing.TB, c net.Conn, settings ...http2.Setting) *http2.Framer {
	t.Helper()
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal("preface:", err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal("settings:", err)
	}
	return fr
}

// dialH2 dials addr and starts an HTTP/2 client on it (h2Client), closed
// when the test ends; a goroutine reads and drops what the server sends
// until then.
func dialH2(t testing.TB, addr string, settings ...http2.Setting) *http2.Framer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fr := h2Client(t, c, settings...)
	go func() {
		for {
			if _, err := fr.ReadFrame(); err != nil {
				return
			}
		}
	}()
	return fr
}

// grpcCallHeaders is the HPACK block of a plain-text gRPC call's request
// headers for path, then extra's.
func grpcCallHeaders(path string, extra ...[2]string) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range append([][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "verdict"},
		{":path", path}, {"content-type", "application/grpc"}}, extra...) {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return hb.Bytes()
}

// TestExtAuthzMessageBudget: ext_authz request messages are read within
// limits.max_body_bytes_in_flight, as addr's bodies are, whatever frames
// they come in. Clients that send their messages 256 bytes a frame and
// hold back the last byte hold the room their bytes take (grpc-go's own
// transport kept a buffer a frame, under no bound: a client sending a byte
// a frame held some 50 bytes for each); a call that finds no room is
// answered with a 503 deny, a CheckResponse and never a gRPC error; a
// small call beside them is answered; and once the held-back bytes
// arrive, the calls are answered and their room is given back.
func TestExtAuthzMessageBudget(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.MaxHeaderBytes, o.Limits.MaxBodyBytes = 64<<10, 64<<10
		o.Limits.MaxBodyBytesInFlight = 1 << 20
	}})
	a := x.srv.admission
	a.wait = 50 * time.Millisecond
	tr := h2cTransport(t)

	// Each message is a CheckRequest of 100 KiB, padded in a header.
	msg := grpcMessage(t, checkRequest("GET", "/catalog", map[string]string{"x-pad": strings.Repeat("p", 100<<10)}))
	type answer struct {
		resp *authv3.CheckResponse
		st   string
		err  error
	}
	const calls = 12 // 1.2 MiB of messages for 1 MiB of room
	var finish []func()
	answers := make(chan answer, calls)
	for range calls {
		body, send := io.Pipe()
		go func() {
			resp, st, err := h2cCall(t.Context(), tr, x.addr, body)
			answers <- answer{resp, st, err}
		}()
		sent := make(chan struct{})
		go func() {
			defer close(sent)
			for p := msg[:len(msg)-1]; len(p) > 0; p = p[min(256, len(p)):] {
				if _, err := send.Write(p[:min(256, len(p))]); err != nil {
					return // refused: the server stopped reading
				}
			}
		}()
		finish = append(finish, func() { <-sent; _, _ = send.Write(msg[len(msg)-1:]); send.Close() })
	}
	// The calls past the room are denied, 503 overloaded.
	var refused int
	for deadline := time.After(10 * time.Second); refused == 0; {
		select {
		case got := <-answers:
			if got.err != nil || got.st != "0" {
				t.Fatalf("a call past the room: %v, grpc-status %q; want a CheckResponse", got.err, got.st)
			}
			a := readAnswer(t, got.resp)
			if a.code != codes.Unavailable || a.http != http.StatusServiceUnavailable || !strings.Contains(a.reasons(), "max_body_bytes_in_flight") {
				t.Fatalf("a call past the room: %v %d %s, want UNAVAILABLE 503 naming limits.max_body_bytes_in_flight", a.code, a.http, a.reasons())
			}
			refused++
		case <-deadline:
			t.Fatalf("no call was refused with 1.2 MiB of messages held for 1 MiB of room (%d bytes reserved)", a.bodies.Used())
		}
	}
	if used := a.bodies.Used(); used == 0 || used > 1<<20 {
		t.Errorf("%d bytes reserved for the held-back messages, want some, at most 1 MiB", used)
	}
	// A small call (its message in a probe) is answered beside them.
	if got := x.check(t, checkRequest("GET", "/catalog", nil)); got.code == codes.Unavailable {
		t.Errorf("a small call beside the held-back messages: %v %s", got.code, got.reasons())
	}
	for _, f := range finish {
		f()
	}
	for range calls - refused {
		got := <-answers
		if got.err != nil || got.st != "0" {
			t.Fatalf("a held-back call once whole: %v, grpc-status %q", got.err, got.st)
		}
		if a := readAnswer(t, got.resp); a.code == codes.Unavailable && strings.Contains(a.reasons(), "max_body_bytes_in_flight") {
			refused++
		} else if a.code != codes.OK && a.code != codes.PermissionDenied {
			t.Errorf("a held-back call once whole: %v %d %s, want a decision", a.code, a.http, a.reasons())
		}
	}
	if refused == calls {
		t.Error("every call was refused")
	}
	for deadline := time.Now().Add(5 * time.Second); a.bodies.Used() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still reserved after every call was answered", a.bodies.Used())
		}
	}
}

// TestExtAuthzConnectionLimit: the ext_authz listener keeps to
// limits.max_connections as addr does: at the bound, an idle connection
// is closed to make room for a new one.
func TestExtAuthzConnectionLimit(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 1 }})
	idle, err := net.Dial("tcp", x.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fr := h2Client(t, idle)
	if _, err := fr.ReadFrame(); err != nil { // the server's settings: it serves the connection
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatalf("a new connection while an idle one fills the limit: %v", err)
	}
	idle.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, err := fr.ReadFrame(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("the idle connection was kept open past the limit")
			}
			return // closed
		}
	}
}

// TestExtAuthzCompressedCall: a compressed message, which Envoy never
// sends and which would grow past its room once decompressed, is refused
// unread: a Check with a 400 deny (a CheckResponse), a health check with
// INVALID_ARGUMENT.
func TestExtAuthzCompressedCall(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	resp, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", nil), grpc.UseCompressor(gzip.Name))
	if err != nil {
		t.Fatalf("a compressed Check: %v, want a CheckResponse", err)
	}
	if a := readAnswer(t, resp); a.code != codes.InvalidArgument || a.http != http.StatusBadRequest || !strings.Contains(a.reasons(), "grpc-encoding") {
		t.Errorf("a compressed Check: %v %d %s, want INVALID_ARGUMENT 400 naming grpc-encoding", a.code, a.http, a.reasons())
	}
	_, err = x.health.Check(t.Context(), &healthpb.HealthCheckRequest{}, grpc.UseCompressor(gzip.Name))
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a compressed health check: %v, want InvalidArgument", err)
	}
}

// TestExtAuthzWatches: a health request is as small as a service name (a
// Watch lasts: it must hold no room of the body budget), and at most
// maxWatches Watch streams are open at once, each holding a connection
// open; one more is refused UNAVAILABLE until one ends.
func TestExtAuthzWatches(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	_, err := x.health.Check(t.Context(), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", bodyProbe)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a health check past %d bytes: %v, want ResourceExhausted", bodyProbe, err)
	}
	watch := func(ctx context.Context) error {
		// A connection each: one carries MaxStreams calls.
		conn := dialExtAuthz(t, x.addr, insecure.NewCredentials())
		w, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{Service: ExtAuthzService})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	var cancels []context.CancelFunc
	for i := range maxWatches {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		cancels = append(cancels, cancel)
		if err := watch(ctx); err != nil {
			t.Fatalf("Watch %d: %v", i, err)
		}
	}
	if err := watch(t.Context()); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "Watch") {
		t.Fatalf("Watch %d: %v, want Unavailable", maxWatches+1, err)
	}
	if used := x.srv.admission.bodies.Used(); used != 0 {
		t.Errorf("%d bytes of the body budget held by open Watches", used)
	}
	cancels[0]()
	var err2 error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err2 = watch(t.Context()); err2 == nil {
			return
		}
	}
	t.Fatalf("a Watch once another ended: %v", err2)
}

// TestExtAuthzWatchesPerConnection: one connection carries at most
// maxWatchesPerConn Watch streams, so that one client cannot hold every
// Watch slot; another connection still watches.
func TestExtAuthzWatchesPerConnection(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	watch := func(conn *grpc.ClientConn) error {
		w, err := healthpb.NewHealthClient(conn).Watch(t.Context(), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
		if err != nil {
			return err
		}
		_, err = w.Recv()
		return err
	}
	one := dialExtAuthz(t, x.addr, insecure.NewCredentials()) // its calls share one connection
	for i := range maxWatchesPerConn {
		if err := watch(one); err != nil {
			t.Fatalf("Watch %d on one connection: %v", i, err)
		}
	}
	if err := watch(one); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "on one connection") {
		t.Errorf("Watch %d on one connection: %v, want Unavailable", maxWatchesPerConn+1, err)
	}
	if err := watch(dialExtAuthz(t, x.addr, insecure.NewCredentials())); err != nil {
		t.Errorf("a Watch on another connection: %v", err)
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"200m", 200 * time.Millisecond, true},
		{"1S", time.Second, true},
		{"5M", 5 * time.Minute, true},
		{"2H", 2 * time.Hour, true},
		{"7u", 7 * time.Microsecond, true},
		{"9n", 9, true},
		{"0m", 0, true},
		{"99999999H", math.MaxInt64, true}, // past a Duration: the longest one
		{"12345678S", 12345678 * time.Second, true},
		{"123456789S", 0, false}, // nine digits
		{"m", 0, false},
		{"", 0, false},
		{"10", 0, false},
		{"10s", 0, false},
		{"-1S", 0, false},
		{"+1S", 0, false},
		{"1_0S", 0, false},
		{" 1S", 0, false},
	} {
		got, ok := parseGRPCTimeout(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzGRPCTimeout: a timeout read is never negative, and one that fits a
// Duration reads back from its own digits and unit.
func FuzzGRPCTimeout(f *testing.F) {
	for _, s := range []string{"200m", "1S", "99999999H", "0n", "12a", "-1m"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseGRPCTimeout(v)
		if !ok {
			return
		}
		if d < 0 {
			t.Fatalf("%q: %v", v, d)
		}
		if len(v) < 2 || len(v) > 9 || strings.IndexFunc(v[:len(v)-1], func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
			t.Fatalf("%q read as %v", v, d)
		}
	})
}

// FuzzExtAuthzFront sends the front Check calls of fuzzed bytes, content
// type and timeout. Nothing panics; every answer is a gRPC answer; an
// answer with a message is a well-formed CheckResponse, and it allows
// only a message that is a CheckRequest (the policy allows all).
func FuzzExtAuthzFront(f *testing.F) {
	fx := newFixture(f, fixtureOptions{noLoad: true})
	if err := fx.engine.Load(f.Context(), authztest.Policy(f, "all", "package authz\n\nallow := true\n")); err != nil {
		f.Fatal(err)
	}
	fx.srv.dlog = nil
	gs, _ := fx.srv.grpcServer()
	f.Cleanup(gs.Stop)
	front := fx.srv.extAuthzFront(gs)
	valid := grpcMessage(f, checkRequest("GET", "/orders/1", nil))
	for _, seed := range []struct {
		body    []byte
		ct, tmo string
	}{
		{valid, "application/grpc", "200m"},
		{valid, "application/grpc+proto", ""},
		{valid[:len(valid)-1], "application/grpc", ""},
		{append(valid, 0), "application/grpc", "1S"},
		{[]byte{1, 0, 0, 0, 0}, "application/grpc", ""},
		{[]byte{0, 0, 0, 0, 0}, "application/grpc", "x"},
		{[]byte{0, 0xff, 0xff, 0xff, 0xff}, "application/grpc", ""},
		{valid, "application/grpc+json", ""},
	} {
		f.Add(seed.body, seed.ct, seed.tmo)
	}
	f.Fuzz(func(t *testing.T, body []byte, ct, tmo string) {
		r := httptest.NewRequest(http.MethodPost, authv3.Authorization_Check_FullMethodName, bytes.NewReader(body))
		r.ProtoMajor, r.ProtoMinor, r.Proto = 2, 0, "HTTP/2.0"
		r.Header.Set("Content-Type", ct)
		if tmo != "" {
			r.Header.Set("Grpc-Timeout", tmo)
		}
		w := httptest.NewRecorder()
		front.ServeHTTP(w, r)
		res := w.Result()
		st := res.Trailer.Get("Grpc-Status")
		if st == "" {
			st = res.Header.Get("Grpc-Status")
		}
		if st == "" {
			if strings.HasPrefix(ct, "application/grpc") && res.StatusCode == http.StatusOK {
				t.Fatalf("a gRPC call answered without a status: %d %q", res.StatusCode, w.Body)
			}
			return // not a gRPC call: grpc-go's HTTP error
		}
		out := w.Body.Bytes()
		if st != "0" || len(out) == 0 {
			return
		}
		if len(out) < grpcMessagePrefix || int(binary.BigEndian.Uint32(out[1:grpcMessagePrefix])) != len(out)-grpcMessagePrefix {
			t.Fatalf("answer not framed: %x", out)
		}
		resp := new(authv3.CheckResponse)
		if err := proto.Unmarshal(out[grpcMessagePrefix:], resp); err != nil {
			t.Fatalf("answer is not a CheckResponse: %v", err)
		}
		a := readAnswer(t, resp)
		if a.code == codes.OK {
			in := new(authv3.CheckRequest)
			if len(body) < grpcMessagePrefix || body[0] != 0 || proto.Unmarshal(body[grpcMessagePrefix:], in) != nil {
				t.Fatalf("allowed a message that is not a CheckRequest: %x", body)
			}
		}
	})
}

// TestExtAuthzConcurrentCalls: calls of every kind at once (Checks, and
// calls grpc-go answers without reading their message) give their
// messages' buffers back only once nothing reads them (run with -race).
func TestExtAuthzConcurrentCalls(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	tr := h2cTransport(t)
	check := grpcMessage(t, checkRequest("GET", "/catalog", map[string]string{"x-pad": strings.Repeat("p", 3<<10)}))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for range 200 {
				path := authv3.Authorization_Check_FullMethodName
				if i%2 == 1 {
					path = "/verdict.test.Unknown/Call"
				}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+x.addr+path, bytes.NewReader(check))
				if err != nil {
					t.Error(err)
					return
				}
				req.Header.Set("Content-Type", "application/grpc")
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := "0"
				if i%2 == 1 {
					want = strconv.Itoa(int(codes.Unimplemented))
				}
				if st := resp.Trailer.Get("Grpc-Status") + resp.Header.Get("Grpc-Status"); st != want {
					t.Errorf("%s: grpc-status %q, want %s", path, st, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestExtAuthzSilentConnections: at limits.max_connections, connections
// that send nothing make room by closing each other, not the served
// connection that sits idle between calls (Envoy's): it goes on carrying
// calls.
func TestExtAuthzSilentConnections(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 4 }})
	if _, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		c, err := net.Dial("tcp", x.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond) // accepted, making room
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	if _, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatalf("a call on the served connection after silent ones filled the limit: %v", err)
	}
	if m := scrape(t, x.srv); !strings.Contains(m, "verdict_ext_authz_connections_closed_total 3") ||
		!strings.Contains(m, "verdict_ext_authz_connections_open 4") {
		t.Errorf("connection metrics:\n%s", grep(m, "verdict_ext_authz_connections"))
	}
}

// TestExtAuthzTimeoutFromHeaders: a client's grpc-timeout runs from the
// call's headers, not from when its message has arrived.
func TestExtAuthzTimeoutFromHeaders(t *testing.T) {
	var seen time.Duration
	var mu sync.Mutex
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Engine = deadlineEngine{Engine: o.Engine, seen: func(d time.Duration) { mu.Lock(); seen = d; mu.Unlock() }}
	}})
	body, send := io.Pipe()
	msg := grpcMessage(t, checkRequest("GET", "/catalog", nil))
	go func() {
		_, _ = send.Write(msg[:10])
		time.Sleep(500 * time.Millisecond)
		_, _ = send.Write(msg[10:])
		send.Close()
	}()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+x.addr+authv3.Authorization_Check_FullMethodName, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Grpc-Timeout", "2S")
	resp, err := h2cTransport(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if seen <= 0 || seen > 1600*time.Millisecond {
		t.Errorf("deadline in %v once the message arrived 500 ms after the headers, want within 1.5s (2s from the headers)", seen)
	}
}

// TestExtAuthzWatchLifetime: a health Watch ends at its lifetime (its
// client watches again), so that one whose client stopped reading cannot
// hold its slot and connection for good.
func TestExtAuthzWatchLifetime(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{watches: 300 * time.Millisecond})
	w, err := x.health.Watch(t.Context(), &healthpb.HealthCheckRequest{Service: ExtAuthzService})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 1)
	go func() {
		_, err := w.Recv()
		ended <- err
	}()
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the Watch sent a status instead of ending")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the Watch outlived its lifetime")
	}
}

// TestExtAuthzStalledCalls: at limits.max_connections, connections that
// each keep a call open and send nothing for it are not busy: they make
// room before a connection that has had calls decided, and a client whose
// idle connection was closed for them connects again and is served.
func TestExtAuthzStalledCalls(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
	if _, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatal(err)
	}
	headers := grpcCallHeaders(authv3.Authorization_Check_FullMethodName)
	for range 3 {
		fr := dialH2(t, x.addr)
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: headers, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatalf("a client beside connections that keep a call open and send nothing: %v", err)
	}
}

// TestExtAuthzUnreadAnswers: at limits.max_connections, connections whose
// clients take no answer (an HTTP/2 window of zero) are not busy once
// their calls are decided, though they keep sending calls: a client is
// served beside them at once, not after their answers' write timeout.
// Both for the Check calls Verdict answers itself and for the calls
// grpc-go answers (a health Check).
func TestExtAuthzUnreadAnswers(t *testing.T) {
	for _, tc := range []struct {
		name string
		path string
		msg  proto.Message
	}{
		{"check", authv3.Authorization_Check_FullMethodName, checkRequest("GET", "/catalog", nil)},
		{"health", healthpb.Health_Check_FullMethodName, &healthpb.HealthCheckRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
			if _, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", nil)); err != nil {
				t.Fatal(err)
			}
			headers := grpcCallHeaders(tc.path)
			msg := grpcMessage(t, tc.msg)
			ctx, stop := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			defer wg.Wait()
			defer stop()
			for range 3 {
				fr := dialH2(t, x.addr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
				wg.Go(func() { // a call every 100 ms, none of whose answers it takes
					for id := uint32(1); ctx.Err() == nil; id += 2 {
						if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: headers, EndHeaders: true}) != nil ||
							fr.WriteData(id, true, msg) != nil {
							return
						}
						select {
						case <-ctx.Done():
						case <-time.After(100 * time.Millisecond):
						}
					}
				})
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(300 * time.Millisecond)
			cctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			defer cancel()
			if _, err := x.client.Check(cctx, checkRequest("GET", "/catalog", nil)); err != nil {
				t.Fatalf("a client beside connections that take no answer: %v", err)
			}
		})
	}
}

// TestExtAuthzWatchesNotBusy: at limits.max_connections, connections that
// carry health Watch streams, waiting for changes to send, are not busy: a
// client is served beside them at once (a Watch lasts an hour).
func TestExtAuthzWatchesNotBusy(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) { o.Limits.MaxConnections = 2 }})
	if _, err := x.client.Check(t.Context(), checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		cc, err := grpc.NewClient("passthrough:///"+x.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		w, err := healthpb.NewHealthClient(cc).Watch(t.Context(), &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Logf("a Watch (its connection may have been closed for the next): %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if _, err := x.client.Check(ctx, checkRequest("GET", "/catalog", nil)); err != nil {
		t.Fatalf("a client beside connections carrying Watch streams: %v", err)
	}
}

// TestExtAuthzAnswerFraming: an answer Verdict writes itself is framed as
// grpc-go frames its own: application/grpc, no Content-Length, the message,
// then grpc-status in the trailers.
func TestExtAuthzAnswerFraming(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+x.addr+authv3.Authorization_Check_FullMethodName,
		bytes.NewReader(grpcMessage(t, checkRequest("GET", "/catalog", nil))))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	resp, err := h2cTransport(t).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/grpc" {
		t.Errorf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, ok := resp.Header["Content-Length"]; ok || resp.ContentLength != -1 {
		t.Errorf("the answer has a Content-Length (%d): grpc-go's have none", resp.ContentLength)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Errorf("grpc-status trailer %q, want 0 (headers %v)", got, resp.Header)
	}
	out := new(authv3.CheckResponse)
	if len(b) < grpcMessagePrefix || int(binary.BigEndian.Uint32(b[1:grpcMessagePrefix])) != len(b)-grpcMessagePrefix {
		t.Fatalf("answer not one framed message: % x", b)
	}
	if err := proto.Unmarshal(b[grpcMessagePrefix:], out); err != nil || out.GetStatus().GetCode() != 0 {
		t.Errorf("answer %v (%v), want an allow", out, err)
	}
}

// TestExtAuthzDecodedUnderSlot: a Check's message is decoded only once
// its call has a decision slot, as a body on addr is. Messages of 120 KiB
// of empty header_map entries decode to some 8 MiB each; decoded before
// the slot was taken, sixteen calls waiting for it held over 100 MiB that
// no bound counted. Now a call waiting for its slot holds its message's
// bytes in limits.max_body_bytes_in_flight, and nothing more.
func TestExtAuthzDecodedUnderSlot(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{mutate: func(o *Options) {
		o.Limits.MaxConcurrentDecisions = 1
	}})
	a := x.srv.admission
	a.wait = 20 * time.Second
	hold, err := a.admit(t.Context()) // the only slot: every call waits
	if err != nil {
		t.Fatal(err)
	}
	released := sync.OnceFunc(hold)
	defer released()

	in := checkRequest("GET", "/catalog", nil)
	hm := &corev3.HeaderMap{}
	in.Attributes.Request.Http.HeaderMap = hm
	for range 60 << 10 { // 2 bytes each on the wire
		hm.Headers = append(hm.Headers, &corev3.HeaderValue{})
	}
	msg := grpcMessage(t, in)
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	const calls = 16
	tr := h2cTransport(t)
	answers := make(chan extAnswer, calls)
	for range calls {
		go func() {
			resp, st, err := h2cCall(t.Context(), tr, x.addr, bytes.NewReader(msg))
			if err != nil || st != "0" {
				t.Errorf("Check: %v, grpc-status %q", err, st)
				answers <- extAnswer{}
				return
			}
			answers <- readAnswer(t, resp)
		}()
	}
	// Every message arrives and waits, its bytes in the body budget.
	want := int64(calls * (len(msg) - bodyProbe))
	for deadline := time.Now().Add(5 * time.Second); a.bodies.Used() < want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if used := a.bodies.Used(); used < want {
		t.Errorf("%d bytes of the body budget held by %d calls waiting for a slot, want at least %d: their messages left it (decoded) before the slot",
			used, calls, want)
	}
	runtime.GC()
	var during runtime.MemStats
	runtime.ReadMemStats(&during)
	if grown := int64(during.HeapAlloc) - int64(before.HeapAlloc); grown > 48<<20 {
		t.Errorf("live heap grew %d MiB while %d calls of %d KiB waited for a slot, want under 48 MiB",
			grown>>20, calls, len(msg)>>10)
	}
	released()
	for range calls {
		if got := <-answers; got.code != codes.OK && got.code != codes.PermissionDenied {
			t.Errorf("a call once a slot was free: %v %d %s, want a decision", got.code, got.http, got.reasons())
		}
	}
	for deadline := time.Now().Add(5 * time.Second); a.bodies.Used() != 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still reserved after every call was answered", a.bodies.Used())
		}
	}
}

// TestExtAuthzUndecodableMessage: a Check whose message does not decode is
// answered with a 400 deny, never with a gRPC error, which Envoy's
// failure_mode_allow lets through. Envoy writes some strings unchecked: a
// client's own TLS SNI (tls_session.sni, with include_tls_session), and in
// older releases its path and headers; a proto3 string that is not UTF-8
// fails the whole message, and grpc-go answered INTERNAL.
func TestExtAuthzUndecodableMessage(t *testing.T) {
	x := newExtAuthzFixture(t, extAuthzOptions{})
	tr := h2cTransport(t)
	for _, tc := range []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{name: "a client's SNI", req: func() *authv3.CheckRequest {
			r := checkRequest("GET", "/catalog", nil)
			r.Attributes.TlsSession = &authv3.AttributeContext_TLSSession{Sni: "zzzz"}
			return r
		}()},
		{name: "the path", req: checkRequest("GET", "/catalog/zzzz", nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := grpcMessage(t, tc.req)
			i := bytes.Index(msg, []byte("zzzz"))
			if i < 0 {
				t.Fatal("no placeholder in the message")
			}
			copy(msg[i:], "\xff\xfe\xfd\xfc")
			resp, st, err := h2cCall(t.Context(), tr, x.addr, bytes.NewReader(msg))
			if err != nil || st != "0" || resp == nil {
				t.Fatalf("answer %v, grpc-status %q, %v: want a CheckResponse with status 0", resp, st, err)
			}
			if a := readAnswer(t, resp); a.code != codes.InvalidArgument || a.http != http.StatusBadRequest || !strings.Contains(a.reasons(), "does not decode") {
				t.Errorf("answer %v %d %s, want INVALID_ARGUMENT 400, the message does not decode", a.code, a.http, a.reasons())
			}
		})
	}
}
