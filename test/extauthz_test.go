package test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

// grpcListeningRE matches the ext_authz listener's own "listening" line.
var grpcListeningRE = regexp.MustCompile(`\blistening addr=(\S+) scheme=(grpcs?)\b`)

// extAuthzYAML serves ext_authz on a free port, trusting peers for the
// source attributes.
func extAuthzYAML(trustedPeers string) string {
	return "ext_authz:\n  grpc_addr: 127.0.0.1:0\n  trusted_peers: [" + trustedPeers + "]\n"
}

// extAuthzClient dials the gRPC address the process logged. No Envoy can
// be installed here, so a client built from the same protos stands in for
// it, sending what Envoy's ext_authz filter sends.
func extAuthzClient(t *testing.T, p *process, creds credentials.TransportCredentials) (*grpc.ClientConn, string) {
	t.Helper()
	m := grpcListeningRE.FindStringSubmatch(p.Stderr.String())
	if m == nil {
		t.Fatalf("no gRPC listening line in the log:\n%s", p.Stderr.String())
	}
	conn, err := grpc.NewClient("passthrough:///"+m[1], grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, m[2]
}

// envoyCheck is the CheckRequest Envoy's ext_authz filter sends for a
// request (with_request_body off): lowercase headers, the path with its
// query, the downstream peer's verified principal and address.
func envoyCheck(method, path string, headers map[string]string, principal string) *authv3.CheckRequest {
	h := map[string]string{":authority": "shop.example", ":method": method, ":path": path, "x-request-id": "e2e-1"}
	for k, v := range headers {
		h[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{
			Principal: principal,
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.1.2.3", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41000}}}},
		},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "e2e-1", Method: method, Path: path, Host: "shop.example", Scheme: "http", Protocol: "HTTP/1.1", Headers: h,
		}},
		ContextExtensions: map[string]string{"route": "shop"},
	}}
}

// checked is a CheckResponse as Envoy would act on it.
type checked struct {
	code    codes.Code
	status  int               // the HTTP status Envoy answers (200: forwarded upstream)
	headers map[string]string // added upstream (allow) or to the local reply (deny)
	body    answer            // the local reply's JSON body
}

// check sends req and reads the answer. It may run on goroutines other
// than the test's: it reports problems with t.Errorf (an RPC error as an
// Unknown code and status 0).
func check(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) checked {
	t.Helper()
	resp, err := c.Check(t.Context(), req)
	if err != nil {
		t.Errorf("Check: %v", err)
		return checked{code: codes.Unknown}
	}
	return readChecked(t, resp)
}

func readChecked(t *testing.T, resp *authv3.CheckResponse) checked {
	t.Helper()
	out := checked{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}}
	var hs []*corev3.HeaderValueOption
	if ok := resp.GetOkResponse(); ok != nil {
		out.status, hs = 200, ok.GetHeaders()
	} else if d := resp.GetDeniedResponse(); d != nil {
		out.status, hs = int(d.GetStatus().GetCode()), d.GetHeaders()
		if err := json.Unmarshal([]byte(d.GetBody()), &out.body); err != nil {
			t.Errorf("denied body is not JSON: %v: %q", err, d.GetBody())
		}
	} else {
		t.Errorf("no http_response: %v", resp)
		return out
	}
	for _, h := range hs {
		out.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
	}
	if (out.code == codes.OK) != (out.status == 200) {
		t.Errorf("gRPC status %v with HTTP %d", out.code, out.status)
	}
	if out.headers["x-verdict-decision-id"] == "" {
		t.Errorf("no x-verdict-decision-id: %v", resp)
	}
	return out
}

// TestExtAuthz drives the ext_authz gRPC service of the real binary as
// Envoy would: allow with headers added upstream, 401 and 403 denies, the
// path rules of /v1/check, method overrides, the mesh principal from a
// trusted peer, many concurrent checks on one connection, and the health
// service.
func TestExtAuthz(t *testing.T) {
	t.Parallel()
	f, p := startWithPolicies(t, actionHeaderYAML+extAuthzYAML("127.0.0.1/32"))
	conn, scheme := extAuthzClient(t, p, insecure.NewCredentials())
	if scheme != "grpc" {
		t.Errorf("scheme %s, want grpc", scheme)
	}
	c := authv3.NewAuthorizationClient(conn)
	viewer := "Bearer " + f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})

	tests := []struct {
		name       string
		req        *authv3.CheckRequest
		wantCode   codes.Code
		wantStatus int
		wantReason string
		wantHeader map[string]string
	}{
		{name: "allow", req: envoyCheck("GET", "/orders/42?page=2", map[string]string{"authorization": viewer}, ""),
			wantCode: codes.OK, wantStatus: 200,
			wantHeader: map[string]string{"x-verdict-subject": "alice", "x-verdict-action": "orders:read", "x-verdict-roles": "viewer"}},
		{name: "no token", req: envoyCheck("GET", "/orders/42", nil, ""),
			wantCode: codes.PermissionDenied, wantStatus: 401, wantReason: "anonymous access to orders:read is not allowed",
			wantHeader: map[string]string{"www-authenticate": "Bearer", "content-type": "application/json"}},
		{name: "bad token", req: envoyCheck("GET", "/catalog", map[string]string{"authorization": viewer[:len(viewer)-4] + "AAAA"}, ""),
			wantCode: codes.PermissionDenied, wantStatus: 401, wantReason: "token: bad_signature",
			wantHeader: map[string]string{"www-authenticate": `Bearer error="invalid_token"`}},
		{name: "deny", req: envoyCheck("DELETE", "/orders/42", map[string]string{"authorization": viewer}, ""),
			wantCode: codes.PermissionDenied, wantStatus: 403, wantReason: "no role grants orders:delete"},
		{name: "dot segments", req: envoyCheck("GET", "/catalog/../orders/42", nil, ""),
			wantCode: codes.InvalidArgument, wantStatus: 400, wantReason: "dot segments"},
		{name: "path parameters", req: envoyCheck("GET", "/catalog/..;/orders/42", nil, ""),
			wantCode: codes.InvalidArgument, wantStatus: 400, wantReason: "';'"},
		{name: "encoded slash", req: envoyCheck("GET", "/catalog%2f..%2forders", nil, ""),
			wantCode: codes.InvalidArgument, wantStatus: 400, wantReason: "encoded '/'"},
		{name: "method override", req: envoyCheck("GET", "/catalog", map[string]string{"x-http-method-override": "DELETE"}, ""),
			wantCode: codes.InvalidArgument, wantStatus: 400, wantReason: "X-Http-Method-Override"},
		{name: "mesh principal from a trusted peer", req: envoyCheck("POST", "/inventory/reserve",
			map[string]string{"x-verdict-action": "inventory:reserve"}, paymentsSPIFFE),
			wantCode: codes.OK, wantStatus: 200, wantHeader: map[string]string{"x-verdict-caller": paymentsSPIFFE}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := check(t, c, tc.req)
			if got.code != tc.wantCode || got.status != tc.wantStatus {
				t.Fatalf("answer %v/%d, want %v/%d: %+v", got.code, got.status, tc.wantCode, tc.wantStatus, got)
			}
			if tc.wantReason != "" {
				text := strings.Join(got.body.Reasons, "; ")
				if got.body.Error != nil {
					text = got.body.Error.Code + ": " + got.body.Error.Message
				}
				if !strings.Contains(text, tc.wantReason) {
					t.Errorf("reasons %q, want %q", text, tc.wantReason)
				}
				if got.body.Allow || got.body.ID != got.headers["x-verdict-decision-id"] {
					t.Errorf("body %+v, decision id header %s", got.body, got.headers["x-verdict-decision-id"])
				}
			}
			for k, v := range tc.wantHeader {
				if got.headers[k] != v {
					t.Errorf("header %s = %q, want %q", k, got.headers[k], v)
				}
			}
		})
	}

	t.Run("concurrent checks on one connection", func(t *testing.T) {
		tokens := map[string]string{}
		for _, sub := range []string{"ann", "bob", "cyd", "dee"} {
			tokens[sub] = "Bearer " + f.Issuer.Mint(t, map[string]any{"sub": sub, "roles": []string{"viewer"}})
		}
		subs := []string{"ann", "bob", "cyd", "dee"}
		var wg sync.WaitGroup
		errs := make(chan string, 400)
		for w := range 16 {
			wg.Go(func() {
				for i := range 25 {
					n := w*25 + i
					sub := subs[n%len(subs)]
					switch n % 3 {
					case 0: // allow, as this subject
						got := check(t, c, envoyCheck("GET", fmt.Sprintf("/orders/%d", n), map[string]string{"authorization": tokens[sub]}, ""))
						if got.code != codes.OK || got.headers["x-verdict-subject"] != sub {
							errs <- fmt.Sprintf("%d: %v %q, want OK as %s", n, got.code, got.headers["x-verdict-subject"], sub)
						}
					case 1: // deny
						got := check(t, c, envoyCheck("DELETE", fmt.Sprintf("/orders/%d", n), map[string]string{"authorization": tokens[sub]}, ""))
						if got.code != codes.PermissionDenied || got.status != 403 {
							errs <- fmt.Sprintf("%d: %v %d, want 403", n, got.code, got.status)
						}
					default: // refused path
						got := check(t, c, envoyCheck("GET", fmt.Sprintf("/a/%d/../b", n), nil, ""))
						if got.code != codes.InvalidArgument || got.status != 400 {
							errs <- fmt.Sprintf("%d: %v %d, want 400", n, got.code, got.status)
						}
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
	})

	t.Run("health", func(t *testing.T) {
		h := healthpb.NewHealthClient(conn)
		for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
			resp, err := h.Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %q: %v %v", svc, resp, err)
			}
		}
	})

	t.Run("decision log", func(t *testing.T) {
		eventually(t, 5*time.Second, func() string {
			if !strings.Contains(p.Stdout.String(), `"api":"ext_authz"`) {
				return "no ext_authz record in the decision log"
			}
			return ""
		})
	})
}

// TestExtAuthzUntrustedPeer checks that a principal from a peer outside
// ext_authz.trusted_peers is ignored: the caller is anonymous.
func TestExtAuthzUntrustedPeer(t *testing.T) {
	t.Parallel()
	f, p := startWithPolicies(t, actionHeaderYAML+extAuthzYAML("192.0.2.0/24"))
	conn, _ := extAuthzClient(t, p, insecure.NewCredentials())
	viewer := "Bearer " + f.Issuer.Mint(t, map[string]any{"roles": []string{"viewer"}})
	got := check(t, authv3.NewAuthorizationClient(conn), envoyCheck("POST", "/inventory/reserve",
		map[string]string{"authorization": viewer, "x-verdict-action": "inventory:reserve"}, paymentsSPIFFE))
	if got.code != codes.PermissionDenied || got.status != 403 ||
		len(got.body.Reasons) != 1 || got.body.Reasons[0] != "only payments may call inventory:reserve, and the caller is not authenticated" {
		t.Errorf("untrusted principal: %+v", got)
	}
}

// TestExtAuthzTLS checks that with tls set the gRPC listener speaks TLS
// with the same client-certificate rule as HTTPS.
func TestExtAuthzTLS(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ca := authztest.NewCA(t, "verdict e2e CA")
	server := loopbackServer(t, ca, "verdict")
	envoy := ca.Issue(t, authztest.LeafOptions{CommonName: "envoy"})
	for name, b := range map[string][]byte{"ca.pem": ca.PEM(), "server.pem": server.CertPEM, "server-key.pem": server.KeyPEM} {
		authztest.WriteFile(t, filepath.Join(f.Dir, name), string(b))
	}
	clientTLS := &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{envoy.TLS}, MinVersion: tls.VersionTLS12}
	p := f.start(t, configWithPolicies(extAuthzYAML("127.0.0.1")+`tls:
  cert_file: server.pem
  key_file: server-key.pem
  client_ca_file: ca.pem
  client_auth: require
`), clientTLS)
	conn, scheme := extAuthzClient(t, p, credentials.NewTLS(clientTLS))
	if scheme != "grpcs" {
		t.Errorf("scheme %s, want grpcs", scheme)
	}
	if got := check(t, authv3.NewAuthorizationClient(conn), envoyCheck("GET", "/catalog", nil, "")); got.code != codes.OK {
		t.Errorf("over mTLS: %+v", got)
	}
	noCert, _ := extAuthzClient(t, p, credentials.NewTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12}))
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := authv3.NewAuthorizationClient(noCert).Check(ctx, envoyCheck("GET", "/catalog", nil, "")); err == nil {
		t.Error("answered a client without a certificate")
	}
}
