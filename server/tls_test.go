package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// TestTLSReplaced serves HTTPS (with client certificates requested) and
// replaces the certificate and client CAs while serving, as a certificate
// manager rotating them would: new connections get the new certificate,
// a client certificate of the CA rotated out is never the caller (on a
// new connection, on one whose session would resume, and on one opened
// before the rotation and kept open), and one of the CA rotated in is.
// HTTP/2 is negotiated throughout.
func TestTLSReplaced(t *testing.T) {
	oldCA, newCA := authztest.NewCA(t, "old ca"), authztest.NewCA(t, "new ca")
	serverCert := func(ca *authztest.CA) authztest.Leaf {
		return ca.Issue(t, authztest.LeafOptions{CommonName: "verdict", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	}
	payments := func(ca *authztest.CA) authztest.Leaf {
		return ca.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	}
	oldServer, newServer := serverCert(oldCA), serverCert(newCA)
	oldClient, newClient := payments(oldCA), payments(newCA)

	tl, err := NewTLS("request")
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Set(oldServer.TLS, oldCA.Pool()); err != nil {
		t.Fatal(err)
	}
	if err := tl.Set(newServer.TLS, nil); err == nil {
		t.Fatal("Set took no client CAs under client_auth request")
	}
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.TLS = tl }})
	addr, err := f.srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	roots := x509.NewCertPool()
	roots.AddCert(oldCA.Cert)
	roots.AddCert(newCA.Cert)
	// Each client keeps its TLS sessions, and resumes them when it can.
	sessions := map[*x509.Certificate]tls.ClientSessionCache{}
	// ask asks over tr, and returns the server's certificate, the first
	// reason, and whether the session resumed.
	ask := func(tr *http.Transport) (served *x509.Certificate, reason string, resumed bool, err error) {
		body := strings.NewReader(`{"action": "inventory:reserve"}`)
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://"+addr.String()+"/v1/decide", body)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			return nil, "", false, err
		}
		defer resp.Body.Close()
		if resp.Proto != "HTTP/2.0" {
			t.Errorf("protocol %s, want HTTP/2.0", resp.Proto)
		}
		var d struct {
			Reasons []string
			Error   struct{ Message string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
			t.Fatalf("answer: %v", err)
		}
		if resp.StatusCode == http.StatusForbidden {
			return resp.TLS.PeerCertificates[0], "403: " + d.Error.Message, resp.TLS.DidResume, nil
		}
		if len(d.Reasons) == 0 {
			t.Fatalf("answer %d without reasons", resp.StatusCode)
		}
		return resp.TLS.PeerCertificates[0], d.Reasons[0], resp.TLS.DidResume, nil
	}
	// transport is a client with certificate c, keeping its sessions.
	transport := func(c authztest.Leaf) *http.Transport {
		if sessions[c.Cert] == nil {
			sessions[c.Cert] = tls.NewLRUClientSessionCache(8)
		}
		return &http.Transport{ForceAttemptHTTP2: true, TLSClientConfig: &tls.Config{RootCAs: roots,
			Certificates: []tls.Certificate{c.TLS}, ClientSessionCache: sessions[c.Cert]}}
	}
	// decide asks on a new connection.
	decide := func(c authztest.Leaf) (*x509.Certificate, string, bool, error) {
		tr := transport(c)
		defer tr.CloseIdleConnections()
		return ask(tr)
	}
	const allowed = "service payments may call inventory:reserve"

	served, reason, _, err := decide(oldClient)
	if err != nil || !served.Equal(oldServer.Cert) || reason != allowed {
		t.Fatalf("before: served %v, reason %q, err %v", served.Subject, reason, err)
	}
	served, reason, resumed, err := decide(oldClient)
	if err != nil || !served.Equal(oldServer.Cert) || reason != allowed {
		t.Fatalf("second connection: served %v, reason %q, err %v", served.Subject, reason, err)
	}
	if !resumed {
		t.Fatal("the second connection did not resume its session: the resumption below proves nothing")
	}
	// A connection opened before the rotation and kept open.
	open := transport(oldClient)
	defer open.CloseIdleConnections()
	if _, reason, _, err := ask(open); err != nil || reason != allowed {
		t.Fatalf("kept connection before: %q %v", reason, err)
	}

	// Both CAs for a while (a rotation's overlap): the open connection's
	// certificate verifies again, and it is still the caller.
	both := oldCA.Pool()
	both.AddCert(newCA.Cert)
	if err := tl.Set(oldServer.TLS, both); err != nil {
		t.Fatal(err)
	}
	if _, reason, _, err := ask(open); err != nil || reason != allowed {
		t.Fatalf("kept connection during the overlap: %q %v", reason, err)
	}
	if err := tl.Set(newServer.TLS, newCA.Pool()); err != nil {
		t.Fatal(err)
	}
	if _, reason, _, err := ask(open); err != nil || !strings.HasPrefix(reason, "403: the client certificate no longer verifies") {
		t.Fatalf("a connection opened before the rotation, after it: %q %v; want a 403 refusing the certificate", reason, err)
	}
	// And it was closed: the next request opens a new connection, on which
	// the certificate the server no longer trusts is refused at the
	// handshake, or (Go's client offers only certificates of the CAs the
	// server names) not offered: never the caller.
	if _, reason, _, err := ask(open); err == nil && (reason == allowed || strings.HasPrefix(reason, "403")) {
		t.Fatalf("the refused connection served again: %q", reason)
	}
	// The client offers no certificate the new CAs accept (Go's sends none:
	// anonymous) or its session from before; it must not be the caller.
	if _, reason, resumed, err := decide(oldClient); err == nil && reason == allowed {
		t.Fatalf("a client certificate of the CA rotated out was the caller (resumed %v)", resumed)
	}
	served, reason, _, err = decide(newClient)
	if err != nil || !served.Equal(newServer.Cert) || reason != allowed {
		t.Fatalf("after: served %v, reason %q, err %v", served.Subject, reason, err)
	}
}

// TestTLSRequireRotatedOut: under client_auth require, a connection opened
// before its client's CA was rotated out is refused on every route (403,
// health included) and closed, over HTTP/1.1 and HTTP/2; a new connection
// with that certificate fails its handshake.
func TestTLSRequireRotatedOut(t *testing.T) {
	oldCA, newCA := authztest.NewCA(t, "old ca"), authztest.NewCA(t, "new ca")
	server := oldCA.Issue(t, authztest.LeafOptions{CommonName: "verdict", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	client := oldCA.Issue(t, authztest.LeafOptions{CommonName: "payments", URIs: []string{"spiffe://verdict.example/ns/shop/sa/payments"}})
	tl, err := NewTLS("require")
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Set(server.TLS, oldCA.Pool()); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.TLS = tl }})
	addr, _ := start(t, f.srv)
	for _, h2 := range []bool{false, true} {
		t.Run(fmt.Sprintf("http2 %v", h2), func(t *testing.T) {
			if err := tl.Set(server.TLS, oldCA.Pool()); err != nil {
				t.Fatal(err)
			}
			tr := &http.Transport{ForceAttemptHTTP2: h2, TLSClientConfig: &tls.Config{RootCAs: oldCA.Pool(), Certificates: []tls.Certificate{client.TLS}}}
			if !h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			get := func() (*http.Response, error) {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "https://"+addr+"/health/live", nil)
				resp, err := (&http.Client{Transport: tr}).Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				return resp, err
			}
			if resp, err := get(); err != nil || resp.StatusCode != 200 || (resp.ProtoMajor == 2) != h2 {
				t.Fatalf("before: %v %v", resp, err)
			}
			if err := tl.Set(server.TLS, newCA.Pool()); err != nil {
				t.Fatal(err)
			}
			resp, err := get()
			if err != nil || resp.StatusCode != http.StatusForbidden {
				t.Fatalf("the open connection after the rotation: %v %v, want 403", resp, err)
			}
			if resp, err := get(); err == nil {
				t.Fatalf("the next request was served (%d): the connection was not closed, or the handshake passed", resp.StatusCode)
			}
		})
	}
}

// TestHTTPErrorLog: what the http.Server logs becomes lines with constant
// messages: a failed TLS handshake (Info, with the remote address and the
// cause apart), a failed accept an error, anything else a warning.
func TestHTTPErrorLog(t *testing.T) {
	var buf bytes.Buffer
	l := log.New(&httpErrorLog{log: slog.New(slog.NewJSONHandler(&buf, nil))}, "", 0)
	l.Printf("http: TLS handshake error from 10.0.0.5:4242: tls: failed to verify certificate: x509: certificate signed by unknown authority")
	l.Printf("http: Accept error: too many open files; retrying in 5ms")
	l.Printf("http: URL query contains semicolon, which is no longer a supported separator")
	var lines []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 || lines[0]["msg"] != "tls handshake failed" || lines[0]["level"] != "INFO" || lines[0]["remote"] != "10.0.0.5:4242" ||
		lines[0]["error"] != "tls: failed to verify certificate: x509: certificate signed by unknown authority" ||
		lines[1]["msg"] != "accept failed" || lines[1]["level"] != "ERROR" || lines[1]["error"] != "http: Accept error: too many open files; retrying in 5ms" ||
		lines[2]["msg"] != "http server error" || lines[2]["level"] != "WARN" {
		t.Fatalf("logged %s", buf.String())
	}
}

// TestHTTPErrorLogBounded: of each kind of line the http.Server logs, at
// most httpErrorBurst an interval are logged as they come; the interval's
// end logs how many more there were, with the same message, and the next
// interval starts afresh.
func TestHTTPErrorLogBounded(t *testing.T) {
	var buf bytes.Buffer
	el := &httpErrorLog{log: slog.New(slog.NewTextHandler(&buf, nil))}
	l := log.New(el, "", 0)
	for i := range 100 {
		l.Printf("http: TLS handshake error from 10.0.0.5:%d: tls: first record does not look like a TLS handshake", 1000+i)
	}
	for range 7 { // a client's: a query with ';'
		l.Printf("http: URL query contains semicolon, which is no longer a supported separator")
	}
	for range 6 { // the server's own: clients' errors do not crowd it out
		l.Printf("http: Accept error: too many open files; retrying in 5ms")
	}
	el.endInterval(time.Minute)
	l.Printf("http: TLS handshake error from 10.0.0.6:1: EOF")
	el.endInterval(time.Minute)
	got := buf.String()
	for _, want := range []struct {
		line  string
		count int
	}{
		{"level=INFO msg=\"tls handshake failed\" remote=10.0.0.5:", httpErrorBurst},
		{"level=INFO msg=\"tls handshake failed\" suppressed=95 interval=1m0s\n", 1},
		{"level=WARN msg=\"http server error\" error=", httpErrorBurst},
		{"level=WARN msg=\"http server error\" suppressed=2 interval=1m0s\n", 1},
		{"level=ERROR msg=\"accept failed\" error=\"http: Accept error: too many open files", httpErrorBurst},
		{"level=ERROR msg=\"accept failed\" suppressed=1 interval=1m0s\n", 1},
		{"level=INFO msg=\"tls handshake failed\" remote=10.0.0.6:1 error=EOF\n", 1},
		{"suppressed=", 3},
	} {
		if n := strings.Count(got, want.line); n != want.count {
			t.Errorf("%q logged %d times, want %d:\n%s", want.line, n, want.count, got)
		}
	}
}

// TestTLSHandshakeFloodBounded: a client opening connection after
// connection and sending anything but TLS makes httpErrorBurst "tls
// handshake failed" lines, and one more, when Run returns, counting the
// rest. Before, every connection made a line (500 in a quarter second).
func TestTLSHandshakeFloodBounded(t *testing.T) {
	tl, _ := loopbackTLS(t)
	var logs authztest.SyncBuffer
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) {
		o.TLS = tl
		o.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	}})
	f.srv.httpErrorEvery = time.Hour
	addr, stop := start(t, f.srv)
	const n = 500
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		c.Close()
	}
	seen := func() int {
		f.srv.httpErrors.mu.Lock()
		defer f.srv.httpErrors.mu.Unlock()
		k := f.srv.httpErrors.kinds[0]
		return k.logged + k.suppressed
	}
	for deadline := time.Now().Add(10 * time.Second); seen() < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d handshake failures seen, want %d", seen(), n)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	got := logs.String()
	if lines := strings.Count(got, `msg="tls handshake failed"`); lines != httpErrorBurst+1 {
		t.Errorf("%d lines of tls handshake failed, want %d:\n%s", lines, httpErrorBurst+1, got)
	}
	if want := fmt.Sprintf(`msg="tls handshake failed" suppressed=%d interval=1h0m0s`, n-httpErrorBurst); !strings.Contains(got, want) {
		t.Errorf("no %q:\n%s", want, got)
	}
}

// TestHTTP2ReceiveBounds: an HTTP/2 client may send at most 64 KiB ahead
// of the handlers' reading, a connection and a stream (Go's default is a
// megabyte each), in frames of at most 16 KiB: bodies waiting for the body
// budget cannot pile up in the server's buffers instead.
func TestHTTP2ReceiveBounds(t *testing.T) {
	tl, ca := loopbackTLS(t)
	f := newFixture(t, fixtureOptions{mutate: func(o *Options) { o.TLS = tl }})
	addr, _ := start(t, f.srv)
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("protocol %q, want h2", p)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fr := h2Client(t, c)
	// The server's SETTINGS, then what it sends before acknowledging ours.
	connWindow, streamWindow, frameSize := uint32(65535), uint32(65535), uint32(16384)
	for acked := false; !acked; {
		fm, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		switch fm := fm.(type) {
		case *http2.SettingsFrame:
			if fm.IsAck() {
				acked = true
				continue
			}
			if v, ok := fm.Value(http2.SettingInitialWindowSize); ok {
				streamWindow = v
			}
			if v, ok := fm.Value(http2.SettingMaxFrameSize); ok {
				frameSize = v
			}
			_ = fr.WriteSettingsAck()
		case *http2.WindowUpdateFrame:
			if fm.StreamID == 0 {
				connWindow += fm.Increment
			}
		}
	}
	if connWindow > 64<<10 || streamWindow > 64<<10 || frameSize > 16<<10 {
		t.Errorf("connection window %d, stream window %d, frame size %d; want at most 64 KiB, 64 KiB, 16 KiB", connWindow, streamWindow, frameSize)
	}
}

// loopbackTLS is server TLS with a certificate for 127.0.0.1 (no client
// certificates), and the CA that issued it.
func loopbackTLS(t *testing.T) (*TLS, *authztest.CA) {
	t.Helper()
	ca := authztest.NewCA(t, "ca")
	leaf := ca.Issue(t, authztest.LeafOptions{CommonName: "verdict", IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	tl, err := NewTLS("")
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.Set(leaf.TLS, nil); err != nil {
		t.Fatal(err)
	}
	return tl, ca
}
