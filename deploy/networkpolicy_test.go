package deploy

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Who may reach Verdict's pods. The manifests' NetworkPolicies are read as
// the API server stores them and checked for what they promise in the
// deploy README: decisions only from the clients' namespaces (or, for a
// sidecar, from nowhere outside the pod), health, status and metrics only
// from the monitoring namespace and only on the diagnostic port, and for
// the shared service egress only to the cluster's DNS and to the hosts its
// configuration fetches from. The kubelet's probes need no rule: traffic
// from a pod's own node is always allowed.

// monitoringNamespace is where Prometheus runs, as the README names it.
const monitoringNamespace = "monitoring"

// envRef is a reference to a container's environment variable in its
// arguments, which the kubelet expands: $(NAME).
var envRef = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)

// podIPEnv returns the name of the container's environment variable that
// holds the pod's address (fieldRef status.podIP), or "".
func podIPEnv(c *corev1.Container) string {
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
			return e.Name
		}
	}
	return ""
}

// expandArgs expands the $(NAME) references in the container's arguments
// as the kubelet does: a variable with a value, or the pod's address
// (podIP here) for one from status.podIP. A reference to anything else
// fails the test, since the kubelet would leave it as it is and Verdict
// would be given "$(NAME)".
func expandArgs(t *testing.T, p *verdictPod, podIP string) []string {
	t.Helper()
	vars := map[string]string{}
	for _, e := range p.container.Env {
		switch {
		case e.ValueFrom == nil:
			vars[e.Name] = e.Value
		case e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP":
			vars[e.Name] = podIP
		}
	}
	var out []string
	for _, a := range p.args {
		out = append(out, envRef.ReplaceAllStringFunc(a, func(ref string) string {
			name := envRef.FindStringSubmatch(ref)[1]
			v, ok := vars[name]
			if !ok {
				t.Errorf("%s: argument %q refers to $(%s), which the container's env does not define (as a value or status.podIP): the kubelet would pass it on unexpanded", p, a, name)
			}
			return v
		}))
	}
	return out
}

// checkDiagnosticAddr checks the diagnostic listener (health, status and
// metrics): there is one, so that the monitoring namespace can be given
// that port and not the decision port, and it is bound to the pod's own
// address, where the kubelet probes and Prometheus scrapes, rather than to
// every interface of the pod.
func checkDiagnosticAddr(t *testing.T, p *verdictPod) {
	t.Helper()
	if p.diagAddr == "" {
		t.Errorf("%s: no diagnostic listener (--diagnostic-addr): /metrics and /v1/status would be on the decision port, which monitoring would then have to reach", p)
		return
	}
	host := strings.TrimSuffix(strings.TrimPrefix(p.diagAddr[:strings.LastIndex(p.diagAddr, ":")], "["), "]")
	if v := podIPEnv(p.container); v == "" || host != "$("+v+")" {
		t.Errorf("%s: diagnostic address %q: want the pod's own address, [$(POD_IP)]:port with POD_IP from status.podIP, not every interface of the pod", p, p.diagAddr)
	}
	expandArgs(t, p, "192.0.2.1")
}

// peerIsMonitoring reports whether a peer is the monitoring namespace (all
// of its pods, or some), and nothing else.
func peerIsMonitoring(peer networkingv1.NetworkPolicyPeer) bool {
	ns := peer.NamespaceSelector
	return peer.IPBlock == nil && ns != nil && len(ns.MatchExpressions) == 0 &&
		maps.Equal(ns.MatchLabels, map[string]string{corev1.LabelMetadataName: monitoringNamespace})
}

// peerIsDNS reports whether a peer is the cluster's DNS pods.
func peerIsDNS(peer networkingv1.NetworkPolicyPeer) bool {
	ns, pods := peer.NamespaceSelector, peer.PodSelector
	return peer.IPBlock == nil && ns != nil && pods != nil &&
		len(ns.MatchExpressions) == 0 && len(pods.MatchExpressions) == 0 &&
		maps.Equal(ns.MatchLabels, map[string]string{corev1.LabelMetadataName: "kube-system"}) &&
		maps.Equal(pods.MatchLabels, map[string]string{"k8s-app": "kube-dns"})
}

// resolvePodPort resolves a NetworkPolicy's port, by number or by the name
// of a port of any of the pod's containers.
func resolvePodPort(spec *corev1.PodSpec, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
		if n, ok := resolvePort(&c, port); ok {
			return n, true
		}
	}
	return 0, false
}

// covers reports whether a rule's ports admit port over protocol; no ports
// admit every port.
func covers(spec *corev1.PodSpec, ports []networkingv1.NetworkPolicyPort, protocol corev1.Protocol, port int32) bool {
	if len(ports) == 0 {
		return true
	}
	for _, np := range ports {
		proto := corev1.ProtocolTCP
		if np.Protocol != nil {
			proto = *np.Protocol
		}
		if proto != protocol {
			continue
		}
		if np.Port == nil {
			return true
		}
		n, ok := resolvePodPort(spec, *np.Port)
		switch {
		case !ok:
		case np.EndPort != nil && port >= n && port <= *np.EndPort:
			return true
		case n == port:
			return true
		}
	}
	return false
}

// checkNetworkPolicy checks the NetworkPolicies that select the pod.
// Ingress: they isolate it; the decision port, unless on loopback, is
// admitted from some peers and never from everyone; the diagnostic port
// only from the monitoring namespace; the monitoring namespace to nothing
// else; and the application's own ports (a sidecar's pod) are still
// admitted. Egress, required with wantEgress: every rule names its
// destinations and ports, none is the whole address space, and DNS goes to
// the cluster's DNS pods only.
func checkNetworkPolicy(t *testing.T, m *manifest, p *verdictPod, wantEgress bool) {
	t.Helper()
	var ingress []networkingv1.NetworkPolicyIngressRule
	var egress []networkingv1.NetworkPolicyEgressRule
	var inIsolated, outIsolated bool
	for _, np := range objectsOf[*networkingv1.NetworkPolicy](m) {
		if !selects(&np.Spec.PodSelector, np.Namespace, p) {
			continue
		}
		types := np.Spec.PolicyTypes
		if len(types) == 0 { // the API's default
			types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
			if len(np.Spec.Egress) > 0 {
				types = append(types, networkingv1.PolicyTypeEgress)
			}
		}
		if slices.Contains(types, networkingv1.PolicyTypeIngress) {
			inIsolated = true
			ingress = append(ingress, np.Spec.Ingress...)
		}
		if slices.Contains(types, networkingv1.PolicyTypeEgress) {
			outIsolated = true
			egress = append(egress, np.Spec.Egress...)
		}
	}
	if !inIsolated {
		t.Errorf("no NetworkPolicy restricts ingress to %s: every pod in the cluster reaches its ports", p)
		return
	}
	spec := p.spec
	admitting := func(port int32) []networkingv1.NetworkPolicyIngressRule {
		var rules []networkingv1.NetworkPolicyIngressRule
		for _, r := range ingress {
			if covers(spec, r.Ports, corev1.ProtocolTCP, port) {
				rules = append(rules, r)
			}
		}
		return rules
	}

	if !p.loopback() {
		rules := admitting(p.port)
		if len(rules) == 0 {
			t.Errorf("the NetworkPolicies of %s let no one reach port %d, where Verdict decides", p, p.port)
		}
		for _, r := range rules {
			if len(r.From) == 0 {
				t.Errorf("%s: an ingress rule admits everyone to port %d, where Verdict decides: name the clients", p, p.port)
			}
		}
	}
	if p.diagAddr != "" {
		rules := admitting(p.diagPort)
		if len(rules) == 0 {
			t.Errorf("the NetworkPolicies of %s let no one reach port %d, the diagnostic listener: Prometheus could not scrape", p, p.diagPort)
		}
		for _, r := range rules {
			if len(r.From) == 0 || !slices.ContainsFunc(r.From, peerIsMonitoring) || slices.ContainsFunc(r.From, func(peer networkingv1.NetworkPolicyPeer) bool { return !peerIsMonitoring(peer) }) {
				t.Errorf("%s: an ingress rule admits %s to port %d (health, /v1/status, /metrics): want the %s namespace only", p, peers(r.From), p.diagPort, monitoringNamespace)
			}
		}
	}
	for _, r := range ingress {
		if !slices.ContainsFunc(r.From, peerIsMonitoring) {
			continue
		}
		ok := len(r.Ports) > 0
		for _, np := range r.Ports {
			n, resolved := int32(0), false
			if np.Port != nil {
				n, resolved = resolvePodPort(spec, *np.Port)
			}
			if !resolved || n != p.diagPort || np.EndPort != nil && *np.EndPort != n {
				ok = false
			}
		}
		if !ok {
			t.Errorf("%s: an ingress rule admits the %s namespace to %s: want the diagnostic port (%d) only", p, monitoringNamespace, ports(r.Ports), p.diagPort)
		}
	}
	for _, c := range spec.Containers {
		if c.Name == verdictContainer {
			continue
		}
		for _, cp := range c.Ports {
			if cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP {
				if len(admitting(cp.ContainerPort)) == 0 {
					t.Errorf("%s: the NetworkPolicies admit no one to container %s's port %d: the application would be cut off", p, c.Name, cp.ContainerPort)
				}
			}
		}
	}

	if !outIsolated {
		if wantEgress {
			t.Errorf("no NetworkPolicy restricts egress from %s", p)
		}
		return
	}
	var dns bool
	for _, r := range egress {
		if len(r.To) == 0 {
			t.Errorf("%s: an egress rule to %s admits every destination: name them", p, ports(r.Ports))
		}
		if len(r.Ports) == 0 {
			t.Errorf("%s: an egress rule to %s admits every port", p, peers(r.To))
		}
		for _, peer := range r.To {
			if b := peer.IPBlock; b != nil {
				if pfx, err := netip.ParsePrefix(b.CIDR); err != nil || pfx.Bits() == 0 {
					t.Errorf("%s: an egress rule admits %s: every address (name the hosts the configuration fetches from)", p, b.CIDR)
				}
			}
		}
		if covers(spec, r.Ports, corev1.ProtocolUDP, 53) || covers(spec, r.Ports, corev1.ProtocolTCP, 53) {
			if len(r.To) == 0 || slices.ContainsFunc(r.To, func(peer networkingv1.NetworkPolicyPeer) bool { return !peerIsDNS(peer) }) {
				t.Errorf("%s: an egress rule admits DNS (port 53) to %s: want the cluster's DNS pods only", p, peers(r.To))
			} else {
				dns = true
			}
		}
	}
	if !dns {
		t.Errorf("%s: no egress rule admits DNS to the cluster's DNS pods: Verdict could not resolve its identity provider", p)
	}
}

// ports formats a rule's ports for a test's message.
func ports(ps []networkingv1.NetworkPolicyPort) string {
	if len(ps) == 0 {
		return "every port"
	}
	var out []string
	for _, np := range ps {
		s := "every port"
		if np.Port != nil {
			s = np.Port.String()
		}
		if np.EndPort != nil {
			s += fmt.Sprintf("-%d", *np.EndPort)
		}
		if np.Protocol != nil {
			s += "/" + string(*np.Protocol)
		}
		out = append(out, s)
	}
	return "ports " + strings.Join(out, ", ")
}

// peers formats a rule's peers for a test's message.
func peers(ps []networkingv1.NetworkPolicyPeer) string {
	if len(ps) == 0 {
		return "everyone"
	}
	var out []string
	for _, peer := range ps {
		var parts []string
		if peer.IPBlock != nil {
			parts = append(parts, "ipBlock "+peer.IPBlock.CIDR)
		}
		if peer.NamespaceSelector != nil {
			parts = append(parts, "namespaces "+metav1.FormatLabelSelector(peer.NamespaceSelector))
		}
		if peer.PodSelector != nil {
			parts = append(parts, "pods "+metav1.FormatLabelSelector(peer.PodSelector))
		}
		out = append(out, strings.Join(parts, " "))
	}
	return strings.Join(out, "; ")
}
