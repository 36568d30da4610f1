// Package deploy holds Verdict's container build, Kubernetes manifests and
// proxy examples; its tests keep them from rotting. The Kubernetes
// manifests are rendered with kustomize, decoded strictly into the API
// types, checked against Verdict and run with the real binary
// (kubernetes_test.go), and their NetworkPolicies checked for who reaches
// which port (networkpolicy_test.go); the image is built with make image and run where a
// container engine works (image_test.go); the Envoy bootstrap is parsed into
// Envoy's own bootstrap proto and validated with its generated rules, and
// the Istio and Envoy Gateway manifests are checked against the Verdict
// configuration beside them (this file).
package deploy

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3" // resolves the router's typed_config
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

// yamlDocs reads every YAML document of a file as generic values.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []map[string]any
	dec := yaml.NewDecoder(f)
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			if errors.Is(err, io.EOF) {
				return docs
			}
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, doc)
	}
}

// verdictConfig parses a Verdict configuration example and returns it with
// its ext_authz gRPC port.
func verdictConfig(t *testing.T, path string) (*config.Config, int) {
	t.Helper()
	c, err := config.Load(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.ExtAuthz == nil {
		t.Fatalf("%s: no ext_authz block", path)
	}
	if _, err := c.ExtAuthzPeerPrefixes(); err != nil {
		t.Fatal(err)
	}
	_, port, err := net.SplitHostPort(c.ExtAuthz.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return c, n
}

// TestEnvoyBootstrap parses envoy/envoy.yaml into the bootstrap proto
// (YAML → JSON → protojson, every typed_config resolved), validates it, and
// checks that its ext_authz filter asks Verdict over gRPC the way Verdict
// expects: API v3, fail closed, no body, to the cluster that reaches the
// port verdict.yaml serves, over HTTP/2, health-checked with the gRPC
// health service Verdict registers.
func TestEnvoyBootstrap(t *testing.T) {
	docs := yamlDocs(t, filepath.Join("envoy", "envoy.yaml"))
	if len(docs) != 1 {
		t.Fatalf("%d YAML documents, want 1", len(docs))
	}
	js, err := json.Marshal(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("envoy.yaml is not an Envoy v3 bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	_, verdictPort := verdictConfig(t, filepath.Join("envoy", "verdict.yaml"))

	listeners := b.GetStaticResources().GetListeners()
	if len(listeners) != 1 || len(listeners[0].GetFilterChains()) != 1 || len(listeners[0].GetFilterChains()[0].GetFilters()) != 1 {
		t.Fatalf("want one listener with one filter chain and the HTTP connection manager: %v", listeners)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := listeners[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if err := hcm.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if !hcm.GetNormalizePath().GetValue() || !hcm.GetMergeSlashes() ||
		hcm.GetPathWithEscapedSlashesAction() != hcmv3.HttpConnectionManager_REJECT_REQUEST {
		t.Error("the connection manager should normalise paths (normalize_path, merge_slashes, escaped slashes rejected)")
	}
	// The edge Envoy takes the client's address from the connection: with
	// use_remote_address off (or trusted hops the example does not have),
	// the last X-Forwarded-For entry, which the client writes, becomes
	// source.address, which Verdict gives policies as remote_addr.
	if !hcm.GetUseRemoteAddress().GetValue() || hcm.GetXffNumTrustedHops() != 0 {
		t.Errorf("use_remote_address %v, xff_num_trusted_hops %d: want true and 0 at the edge, so that a client's X-Forwarded-For is not taken for its address",
			hcm.GetUseRemoteAddress().GetValue(), hcm.GetXffNumTrustedHops())
	}

	filters := hcm.GetHttpFilters()
	i := slices.IndexFunc(filters, func(f *hcmv3.HttpFilter) bool { return f.GetName() == "envoy.filters.http.ext_authz" })
	if i < 0 || i != len(filters)-2 || filters[len(filters)-1].GetName() != "envoy.filters.http.router" {
		t.Fatalf("want the ext_authz filter right before the router, have %v", filters)
	}
	var ea extauthzv3.ExtAuthz
	if err := filters[i].GetTypedConfig().UnmarshalTo(&ea); err != nil {
		t.Fatal(err)
	}
	if err := ea.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		t.Errorf("transport_api_version %v, want V3", ea.GetTransportApiVersion())
	}
	if ea.GetFailureModeAllow() {
		t.Error("failure_mode_allow is set: Envoy would let requests through when Verdict is down")
	}
	if ea.GetWithRequestBody() != nil {
		t.Error("with_request_body is set: Verdict does not read the body")
	}
	if ea.GetIncludePeerCertificate() {
		t.Error("include_peer_certificate is set: Verdict does not read it")
	}
	// A header Envoy leaves out of the CheckRequest is one Verdict cannot
	// see: a client's x-verdict-* header would reach the upstream, and an
	// override header would not be refused.
	if ea.GetAllowedHeaders() != nil || ea.GetDisallowedHeaders() != nil {
		t.Error("allowed_headers or disallowed_headers is set: Verdict must see every header to remove a client's x-verdict-* and refuse overrides")
	}
	cluster := ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cluster != "verdict" || ea.GetGrpcService().GetTimeout() == nil {
		t.Errorf("grpc_service %v, want envoy_grpc to cluster verdict with a timeout", ea.GetGrpcService())
	}

	// The route's context_extensions are well-formed.
	route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	var per extauthzv3.ExtAuthzPerRoute
	if err := route.GetTypedPerFilterConfig()["envoy.filters.http.ext_authz"].UnmarshalTo(&per); err != nil {
		t.Fatal(err)
	}
	if per.GetCheckSettings().GetContextExtensions()["route"] == "" {
		t.Errorf("per-route check settings %v", &per)
	}

	var found bool
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != cluster {
			continue
		}
		found = true
		var po httpv3.HttpProtocolOptions
		if err := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"].UnmarshalTo(&po); err != nil {
			t.Fatalf("cluster %s: protocol options: %v", cluster, err)
		}
		if po.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Errorf("cluster %s does not speak HTTP/2, which gRPC needs", cluster)
		}
		port := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
		if int(port) != verdictPort {
			t.Errorf("cluster %s reaches port %d, verdict.yaml serves ext_authz on %d", cluster, port, verdictPort)
		}
		hc := c.GetHealthChecks()
		if len(hc) != 1 || hc[0].GetGrpcHealthCheck().GetServiceName() != server.ExtAuthzService {
			t.Errorf("cluster %s health checks %v, want the gRPC health service for %s", cluster, hc, server.ExtAuthzService)
		}
	}
	if !found {
		t.Errorf("no cluster %q", cluster)
	}
}

// get walks a generic YAML value along keys (strings for mappings, ints
// for sequences).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			s, _ := v.([]any)
			if k >= len(s) {
				return nil
			}
			v = s[k]
		}
	}
	return v
}

// TestIstio checks the Istio example: the extension provider names
// Verdict's gRPC port, fails closed, and is the provider of the CUSTOM
// policy; Verdict's callers are restricted to mesh principals on that
// port, everything else it allows to named mesh sources (checkIstioCallers),
// and verdict.yaml trusts only the sidecar's address.
func TestIstio(t *testing.T) {
	c, port := verdictConfig(t, filepath.Join("istio", "verdict.yaml"))
	if !slices.Equal(c.ExtAuthz.TrustedPeers, []string{"127.0.0.6/32"}) {
		t.Errorf("istio/verdict.yaml trusts %v, want only the sidecar (127.0.0.6/32)", c.ExtAuthz.TrustedPeers)
	}
	mesh := yamlDocs(t, filepath.Join("istio", "mesh-config.yaml"))
	provider := get(mesh[0], "spec", "meshConfig", "extensionProviders", 0)
	grpcProvider := get(provider, "envoyExtAuthzGrpc")
	if get(grpcProvider, "port") != port || get(grpcProvider, "failOpen") != false || get(grpcProvider, "service") == nil {
		t.Errorf("extension provider %v, want envoyExtAuthzGrpc on port %d, failOpen false", provider, port)
	}
	if get(grpcProvider, "includeRequestBodyInCheck") != nil {
		t.Error("the provider sends the body, which Verdict does not read")
	}
	pols := yamlDocs(t, filepath.Join("istio", "authorization-policy.yaml"))
	if len(pols) != 2 {
		t.Fatalf("%d documents, want 2", len(pols))
	}
	if get(pols[0], "kind") != "AuthorizationPolicy" || get(pols[0], "spec", "action") != "CUSTOM" ||
		get(pols[0], "spec", "provider", "name") != get(provider, "name") {
		t.Errorf("CUSTOM policy %v does not name provider %v", pols[0], get(provider, "name"))
	}
	callers := pols[1]
	if get(callers, "spec", "action") != "ALLOW" || get(callers, "spec", "rules", 0, "from", 0, "source", "principals", 0) == nil ||
		get(callers, "spec", "rules", 0, "to", 0, "operation", "ports", 0) != strconv.Itoa(port) {
		t.Errorf("verdict-callers policy %v, want ALLOW from mesh principals to port %d", callers, port)
	}
	// The policy guards the shared service's pods: its selector must match
	// their labels, or it restricts no one; and /metrics is where the
	// overlay serves it, on its diagnostic listener when it has one.
	_, pod := renderOverlay(t, "shared-service")
	metricsPort := pod.diagAddr
	if metricsPort == "" {
		metricsPort = c.Addr
	}
	_, metricsPort, err := net.SplitHostPort(metricsPort)
	if err != nil {
		t.Fatal(err)
	}
	checkIstioCallers(t, metricsPort, callers)
	labels := pod.deployment.Spec.Template.Labels
	selector, _ := get(callers, "spec", "selector", "matchLabels").(map[string]any)
	if len(selector) == 0 {
		t.Fatal("verdict-callers selects every workload of its namespace")
	}
	for k, v := range selector {
		if labels[k] != v {
			t.Errorf("verdict-callers selects %s=%v, which the shared service's pods (labels %v) lack: it would guard nothing", k, v, labels)
		}
	}
}

// checkIstioCallers checks every rule of the verdict-callers ALLOW policy:
// each names its sources (mesh principals or namespaces, which only an
// mTLS peer matches), so that no rule lets everyone in; none allows the
// health paths, which the kubelet's probes reach through Istio's agent
// without passing the sidecar's inbound listener (a rule for them would let
// every workload in); and /metrics is allowed only to the monitoring
// namespace, as GET of that one path on the port that serves it.
func checkIstioCallers(t *testing.T, metricsPort string, callers map[string]any) {
	t.Helper()
	strs := func(v any) []string {
		var out []string
		for _, x := range asSlice(v) {
			s, _ := x.(string)
			out = append(out, s)
		}
		return out
	}
	rules := asSlice(get(callers, "spec", "rules"))
	var metrics bool
	for i, r := range rules {
		from := asSlice(get(r, "from"))
		if len(from) == 0 {
			t.Errorf("verdict-callers rule %d has no from: it allows every source, mesh or not", i)
		}
		var namespaces, principals []string
		for _, f := range from {
			src, _ := get(f, "source").(map[string]any)
			for k := range src {
				if k != "principals" && k != "namespaces" {
					t.Errorf("verdict-callers rule %d: source %s: want principals or namespaces only (mTLS identities)", i, k)
				}
			}
			ns, ps := strs(src["namespaces"]), strs(src["principals"])
			if len(ns)+len(ps) == 0 {
				t.Errorf("verdict-callers rule %d: a source without principals or namespaces", i)
			}
			namespaces, principals = append(namespaces, ns...), append(principals, ps...)
		}
		for _, to := range asSlice(get(r, "to")) {
			op := get(to, "operation")
			paths := strs(get(op, "paths"))
			for _, path := range paths {
				if strings.HasPrefix(path, "/health") {
					t.Errorf("verdict-callers rule %d allows %s: Istio's agent probes Verdict past the sidecar, so this admits only other workloads", i, path)
				}
			}
			if !slices.Contains(paths, "/metrics") {
				continue
			}
			metrics = true
			if !slices.Equal(paths, []string{"/metrics"}) || !slices.Equal(strs(get(op, "methods")), []string{"GET"}) ||
				!slices.Equal(strs(get(op, "ports")), []string{metricsPort}) {
				t.Errorf("verdict-callers rule %d: %v, want GET /metrics on port %s only, where it is served", i, op, metricsPort)
			}
			for _, ns := range namespaces {
				if ns != monitoringNamespace {
					t.Errorf("verdict-callers rule %d allows /metrics to namespace %s, want %s only", i, ns, monitoringNamespace)
				}
			}
			for _, p := range principals {
				if !strings.HasPrefix(p, "cluster.local/ns/"+monitoringNamespace+"/") {
					t.Errorf("verdict-callers rule %d allows /metrics to %s, want principals of namespace %s only", i, p, monitoringNamespace)
				}
			}
		}
	}
	if !metrics {
		t.Errorf("verdict-callers allows /metrics to no one: Prometheus in %s could not scrape through the mesh", monitoringNamespace)
	}
}

// asSlice returns a generic YAML sequence, or nil.
func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// TestEnvoyGateway checks the Envoy Gateway example: a SecurityPolicy
// whose gRPC ext_authz backend is Verdict's port, failing closed, and the
// ReferenceGrant that lets it name a Service in another namespace.
func TestEnvoyGateway(t *testing.T) {
	_, port := verdictConfig(t, filepath.Join("envoy", "verdict.yaml"))
	docs := yamlDocs(t, filepath.Join("envoy-gateway", "security-policy.yaml"))
	if len(docs) != 2 {
		t.Fatalf("%d documents, want 2", len(docs))
	}
	sp := docs[0]
	ref := get(sp, "spec", "extAuth", "grpc", "backendRefs", 0)
	if get(sp, "kind") != "SecurityPolicy" || get(ref, "port") != port || get(sp, "spec", "extAuth", "failOpen") != false {
		t.Errorf("SecurityPolicy %v, want a gRPC backend on port %d and failOpen false", sp, port)
	}
	grant := docs[1]
	if get(grant, "kind") != "ReferenceGrant" || get(grant, "metadata", "namespace") != get(ref, "namespace") ||
		get(grant, "spec", "to", 0, "name") != get(ref, "name") {
		t.Errorf("ReferenceGrant %v does not cover %v", grant, ref)
	}
}
