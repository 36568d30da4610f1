package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	kjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/server"
	"github.com/verdict-pdp/verdict/server/config"
)

// The Kubernetes manifests under kubernetes/ are rendered with kustomize's
// own library (krusty, what `kubectl apply -k` runs) and every object is
// decoded strictly into the Kubernetes API types, as the API server would:
// an unknown or misspelt field, a wrong type or a kind that is not
// registered fails. Then the tests check what the API server does not and
// what would rot silently: that the pods run Verdict the way Verdict
// expects (probes on its routes and its port, a configuration its own
// loader accepts, paths inside the volumes, a grace period longer than its
// shutdown, a restricted security context) and that the Service,
// PodDisruptionBudget, HorizontalPodAutoscaler and NetworkPolicy reach those
// pods. Last, the real binary runs each pod's container arguments against
// its volumes, laid out as the kubelet lays them out, until it is ready.

// verdictContainer is the name of Verdict's container in every pod.
const verdictContainer = "verdict"

// manifest is a rendered kustomization, decoded into the API types.
type manifest struct {
	dir     string
	objects []runtime.Object
}

// scheme registers the kinds the manifests may hold; any other kind is an
// error.
func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme,
	} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// render builds the kustomization in dir and decodes every object strictly.
func render(t *testing.T, dir string) *manifest {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), abs)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	s := scheme(t)
	dec := kjson.NewSerializerWithOptions(kjson.DefaultMetaFactory, s, s, kjson.SerializerOptions{Strict: true})
	m := &manifest{dir: dir}
	for _, r := range res.Resources() {
		js, err := r.MarshalJSON()
		if err != nil {
			t.Fatalf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
		}
		obj, _, err := dec.Decode(js, nil, nil)
		if err != nil {
			t.Errorf("%s: %s %s: %v", dir, r.GetKind(), r.GetName(), err)
			continue
		}
		m.objects = append(m.objects, obj)
	}
	if t.Failed() {
		t.FailNow()
	}
	return m
}

// objectsOf returns the manifest's objects of type T.
func objectsOf[T runtime.Object](m *manifest) []T {
	var out []T
	for _, o := range m.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func (m *manifest) configMap(namespace, name string) *corev1.ConfigMap {
	for _, cm := range objectsOf[*corev1.ConfigMap](m) {
		if cm.Namespace == namespace && cm.Name == name {
			return cm
		}
	}
	return nil
}

// mount is one of the container's volume mounts and its volume.
type mount struct {
	path      string // mountPath
	volume    *corev1.Volume
	configMap *corev1.ConfigMap // the volume's ConfigMap, for a configMap volume
	writable  bool              // an emptyDir mounted read-write
}

// verdictPod is a pod template running Verdict, and what its container
// says: its arguments, its configuration, its listen address.
type verdictPod struct {
	deployment *appsv1.Deployment
	spec       *corev1.PodSpec
	container  *corev1.Container
	sidecar    bool // a native sidecar: an init container with restartPolicy Always
	args       []string
	cfgPath    string // --config
	cfgData    string
	cfg        *config.Config
	addr       string // --addr, else the configuration's addr, else server.DefaultAddr
	port       int32
	// diagAddr is --diagnostic-addr, else the configuration's
	// diagnostic_addr: where health, status and metrics are served too
	// (plain HTTP), and the probes go; "" when none.
	diagAddr string
	diagPort int32
	mounts   []mount
}

func (p *verdictPod) String() string {
	return fmt.Sprintf("Deployment %s/%s, container %s", p.deployment.Namespace, p.deployment.Name, p.container.Name)
}

// loopback reports whether Verdict listens on a loopback address only.
func (p *verdictPod) loopback() bool { return isLoopback(p.addr) }

// isLoopback reports whether addr is on a loopback address only.
func isLoopback(addr string) bool {
	host, _, _ := net.SplitHostPort(addr)
	ip := net.ParseIP(host)
	return host == "localhost" || ip != nil && ip.IsLoopback()
}

// mountOf returns the mount holding path, the longest that does.
func (p *verdictPod) mountOf(path string) *mount {
	var best *mount
	for i, m := range p.mounts {
		if (path == m.path || strings.HasPrefix(path, m.path+"/")) && (best == nil || len(m.path) > len(best.path)) {
			best = &p.mounts[i]
		}
	}
	return best
}

// flagValue returns the value of --name in args (--name v or --name=v),
// the last one when repeated, as the CLI's flag parsing takes it. The CLI
// itself parses the arguments when the pod runs (runPod).
func flagValue(args []string, name string) (string, bool) {
	var v string
	var found bool
	for i, a := range args {
		switch {
		case a == "--"+name && i+1 < len(args):
			v, found = args[i+1], true
		case strings.HasPrefix(a, "--"+name+"="):
			v, found = strings.TrimPrefix(a, "--"+name+"="), true
		}
	}
	return v, found
}

// renderOverlay renders kubernetes/overlays/NAME, an overlay with one
// Verdict pod, and returns it with that pod; another number of Verdict
// pods fails the test.
func renderOverlay(t *testing.T, name string) (*manifest, *verdictPod) {
	t.Helper()
	m := render(t, filepath.Join("kubernetes", "overlays", name))
	pods := verdictPods(t, m)
	if len(pods) != 1 {
		t.Fatalf("%s: %d Verdict pods, want 1", m.dir, len(pods))
	}
	return m, pods[0]
}

// verdictPods finds every pod template with a Verdict container and reads
// what the container says; what cannot be read fails the test.
func verdictPods(t *testing.T, m *manifest) []*verdictPod {
	t.Helper()
	var pods []*verdictPod
	for _, d := range objectsOf[*appsv1.Deployment](m) {
		spec := &d.Spec.Template.Spec
		p := &verdictPod{deployment: d, spec: spec}
		for i := range spec.Containers {
			if spec.Containers[i].Name == verdictContainer {
				p.container = &spec.Containers[i]
			}
		}
		for i := range spec.InitContainers {
			if c := &spec.InitContainers[i]; c.Name == verdictContainer {
				if c.RestartPolicy == nil || *c.RestartPolicy != corev1.ContainerRestartPolicyAlways {
					t.Errorf("%s/%s: verdict is an init container without restartPolicy Always: serve never exits, so the pod would never start", d.Namespace, d.Name)
				}
				p.container, p.sidecar = c, true
			}
		}
		if p.container == nil {
			continue
		}
		readPod(t, m, p)
		pods = append(pods, p)
	}
	if len(pods) == 0 {
		t.Fatalf("%s: no Deployment has a container named %q", m.dir, verdictContainer)
	}
	return pods
}

// readPod reads the container's mounts, arguments and configuration.
func readPod(t *testing.T, m *manifest, p *verdictPod) {
	t.Helper()
	c := p.container
	for _, vm := range c.VolumeMounts {
		i := slices.IndexFunc(p.spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			t.Fatalf("%s: volume mount %s names no volume", p, vm.Name)
		}
		v := &p.spec.Volumes[i]
		mt := mount{path: path.Clean(vm.MountPath), volume: v}
		switch {
		case vm.SubPath != "" || vm.SubPathExpr != "":
			t.Fatalf("%s: volume mount %s uses a subPath: the kubelet never updates it (a policy edit would not reach Verdict)", p, vm.Name)
		case v.ConfigMap != nil:
			if mt.configMap = m.configMap(p.deployment.Namespace, v.ConfigMap.Name); mt.configMap == nil {
				t.Fatalf("%s: volume %s mounts ConfigMap %s, which the kustomization does not make", p, v.Name, v.ConfigMap.Name)
			}
			if len(v.ConfigMap.Items) > 0 {
				t.Fatalf("%s: volume %s lists items: lay them out in layOut before using them", p, v.Name)
			}
		case v.EmptyDir != nil:
			mt.writable = !vm.ReadOnly
		default:
			t.Fatalf("%s: volume %s is neither a ConfigMap nor an emptyDir: teach readPod and layOut about it", p, v.Name)
		}
		p.mounts = append(p.mounts, mt)
	}

	if len(c.Command) > 0 {
		t.Errorf("%s: command %q replaces the image's entrypoint (/verdict); set args only", p, c.Command)
	}
	p.args = c.Args
	if len(p.args) == 0 || p.args[0] != "serve" {
		t.Fatalf("%s: args %q, want serve and its flags", p, p.args)
	}
	var ok bool
	if p.cfgPath, ok = flagValue(p.args, "config"); !ok {
		t.Fatalf("%s: no --config: Verdict would serve its demo, trusting a development token issuer", p)
	}
	mt := p.mountOf(p.cfgPath)
	if mt == nil || mt.configMap == nil {
		t.Fatalf("%s: --config %s is in no ConfigMap volume", p, p.cfgPath)
	}
	rel, _ := filepath.Rel(mt.path, p.cfgPath)
	if p.cfgData, ok = mt.configMap.Data[rel]; !ok {
		t.Fatalf("%s: --config %s: ConfigMap %s has no key %s", p, p.cfgPath, mt.configMap.Name, rel)
	}
	cfg, err := config.Parse([]byte(p.cfgData), p.cfgPath)
	if err != nil {
		t.Fatalf("%s: ConfigMap %s: %v", p, mt.configMap.Name, err)
	}
	p.cfg = cfg

	p.addr = server.DefaultAddr
	if cfg.Addr != "" {
		p.addr = cfg.Addr
	}
	if a, ok := flagValue(p.args, "addr"); ok {
		p.addr = a
	}
	p.port = listenPort(t, p, p.addr)
	p.diagAddr = cfg.DiagnosticAddr
	if a, ok := flagValue(p.args, "diagnostic-addr"); ok {
		p.diagAddr = a
	}
	if p.diagAddr != "" {
		p.diagPort = listenPort(t, p, p.diagAddr)
	}
}

// listenPort reads the port of a listen address, failing the test when
// there is none.
func listenPort(t *testing.T, p *verdictPod, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: listen address %q: %v", p, addr, err)
	}
	var n int
	if _, err := fmt.Sscan(port, &n); err != nil || n <= 0 || n > 65535 {
		t.Fatalf("%s: listen address %q: port %q", p, addr, port)
	}
	return int32(n)
}

// resolvePort resolves a probe's or a Service's target port, by name or
// number, against the container's ports.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort, true
		}
	}
	return 0, false
}

// routes answers as the server's own routes do, with a ready engine.
func routes(t *testing.T) http.Handler {
	t.Helper()
	srv, err := server.New(server.Options{Engine: readyEngine{}})
	if err != nil {
		t.Fatal(err)
	}
	return srv.Handler()
}

// readyEngine is an engine with a policy loaded, for routes.
type readyEngine struct{}

func (readyEngine) Decide(context.Context, authz.Request) (authz.Decision, error) {
	return authz.Decision{}, nil
}
func (readyEngine) Status() authz.Status { return authz.Status{Ready: true, Revision: "test"} }

// checkProbes checks the container's probes: a loopback listener has none
// (the kubelet probes the pod's address); any other has a startup, a
// liveness and a readiness probe, each an HTTP GET of a route the server
// serves (200 from a ready server) on the port Verdict listens on, with
// liveness on /health/live and readiness on /health/ready.
func checkProbes(t *testing.T, p *verdictPod, h http.Handler) {
	t.Helper()
	c := p.container
	probes := []struct {
		kind  string
		probe *corev1.Probe
		paths []string
	}{
		{"startupProbe", c.StartupProbe, []string{"/health/live", "/health/ready"}},
		{"livenessProbe", c.LivenessProbe, []string{"/health/live"}},
		{"readinessProbe", c.ReadinessProbe, []string{"/health/ready"}},
	}
	// The kubelet probes the diagnostic listener when there is one (plain
	// HTTP, health on both listeners), else the listener.
	probeAddr, probePort := p.addr, p.port
	scheme := corev1.URISchemeHTTP
	switch {
	case p.diagAddr != "":
		probeAddr, probePort = p.diagAddr, p.diagPort
	case p.cfg.TLS != nil:
		scheme = corev1.URISchemeHTTPS
	}
	if isLoopback(probeAddr) {
		for _, pr := range probes {
			if pr.probe != nil {
				t.Errorf("%s: %s, but Verdict listens on %s: the kubelet probes the pod's address, which a loopback listener never answers", p, pr.kind, probeAddr)
			}
		}
		return
	}
	for _, pr := range probes {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet %s on %s", p, pr.kind, strings.Join(pr.paths, " or "))
			continue
		}
		g := pr.probe.HTTPGet
		if !slices.Contains(pr.paths, g.Path) {
			t.Errorf("%s: %s path %q, want %s", p, pr.kind, g.Path, strings.Join(pr.paths, " or "))
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, g.Path, nil))
		if rec.Code != http.StatusOK {
			t.Errorf("%s: %s path %q: the server answers %d to GET, want 200", p, pr.kind, g.Path, rec.Code)
		}
		if port, ok := resolvePort(c, g.Port); !ok || port != probePort {
			t.Errorf("%s: %s port %s is %d, Verdict serves health on %s", p, pr.kind, g.Port.String(), port, probeAddr)
		}
		if g.Scheme != "" && g.Scheme != scheme || g.Scheme == "" && scheme != corev1.URISchemeHTTP {
			t.Errorf("%s: %s scheme %q, want %s", p, pr.kind, g.Scheme, scheme)
		}
		if g.Host != "" {
			t.Errorf("%s: %s host %q: the kubelet would probe that host, not the pod", p, pr.kind, g.Host)
		}
	}
	if !slices.ContainsFunc(c.Ports, func(cp corev1.ContainerPort) bool { return cp.ContainerPort == probePort }) {
		t.Errorf("%s: no container port is %d, where Verdict serves health (%s)", p, probePort, probeAddr)
	}
}

// checkSecurity checks the restricted security context: not root, no
// privilege escalation, no capabilities, the runtime's seccomp profile, a
// read-only root filesystem.
func checkSecurity(t *testing.T, p *verdictPod) {
	t.Helper()
	pod := p.spec.SecurityContext
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	sc := p.container.SecurityContext
	if sc == nil {
		t.Errorf("%s: no securityContext", p)
		return
	}
	runAsNonRoot := pod.RunAsNonRoot
	if sc.RunAsNonRoot != nil {
		runAsNonRoot = sc.RunAsNonRoot
	}
	runAsUser := pod.RunAsUser
	if sc.RunAsUser != nil {
		runAsUser = sc.RunAsUser
	}
	seccomp := pod.SeccompProfile
	if sc.SeccompProfile != nil {
		seccomp = sc.SeccompProfile
	}
	if runAsNonRoot == nil || !*runAsNonRoot {
		t.Errorf("%s: runAsNonRoot is not true", p)
	}
	if runAsUser != nil && *runAsUser == 0 {
		t.Errorf("%s: runAsUser 0", p)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Errorf("%s: readOnlyRootFilesystem is not true", p)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", p)
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Errorf("%s: privileged", p)
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities %v, want drop [ALL] and nothing added", p, sc.Capabilities)
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("%s: seccompProfile %v, want RuntimeDefault", p, seccomp)
	}
}

// checkLifecycle checks that the pod waits for Verdict's shutdown: the
// grace period is longer than the preStop pause plus
// limits.shutdown_timeout.
func checkLifecycle(t *testing.T, p *verdictPod) {
	t.Helper()
	grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if p.spec.TerminationGracePeriodSeconds != nil {
		grace = *p.spec.TerminationGracePeriodSeconds
	}
	shutdown := p.cfg.Limits.ShutdownTimeout
	if shutdown == 0 {
		shutdown = server.DefaultShutdownTimeout
	}
	var pause time.Duration
	if l := p.container.Lifecycle; l != nil && l.PreStop != nil {
		switch {
		case l.PreStop.Sleep != nil:
			pause = time.Duration(l.PreStop.Sleep.Seconds) * time.Second
		case l.PreStop.Exec != nil:
			t.Errorf("%s: preStop exec %q: the image has no shell and no programs but verdict (use sleep)", p, l.PreStop.Exec.Command)
		}
	}
	if time.Duration(grace)*time.Second <= pause+shutdown {
		t.Errorf("%s: terminationGracePeriodSeconds %d, not longer than the preStop pause (%v) plus limits.shutdown_timeout (%v): the kubelet would kill Verdict with decisions in flight",
			p, grace, pause, shutdown)
	}
}

// checkResources checks requests (the autoscaler measures against them)
// and a memory limit, and that GOMEMLIMIT leaves room below it: at the
// limit itself (the downward API's value), the runtime lets the heap reach
// what the container may hold in all, and the kernel kills the process
// before the collector works hard.
func checkResources(t *testing.T, p *verdictPod) {
	t.Helper()
	r := p.container.Resources
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if q, ok := r.Requests[name]; !ok || q.IsZero() {
			t.Errorf("%s: no %s request", p, name)
		}
	}
	limit, ok := r.Limits[corev1.ResourceMemory]
	if !ok || limit.IsZero() {
		t.Errorf("%s: no memory limit", p)
		return
	}
	var gomemlimit string
	for _, e := range p.container.Env {
		if e.Name == "GOMEMLIMIT" {
			gomemlimit = e.Value
		}
	}
	// GOMEMLIMIT's units are KiB, MiB, GiB: Kubernetes writes them Ki, Mi, Gi.
	q, err := resource.ParseQuantity(strings.TrimSuffix(gomemlimit, "B"))
	if err != nil || q.Value() <= 0 || q.Value() > limit.Value()*95/100 {
		t.Errorf("%s: GOMEMLIMIT %q (%v), want a value at most 95%% of the memory limit %s", p, gomemlimit, err, limit.String())
	}
}

// checkPaths checks the configuration's paths against the volumes: what
// Verdict reads is in a mounted volume, the policy directory is a
// ConfigMap mount (so edits reach it), and what it writes is in a
// writable emptyDir or "off" (the root filesystem is read-only).
func checkPaths(t *testing.T, p *verdictPod) {
	t.Helper()
	cfg := p.cfg
	read := func(key, file string) {
		t.Helper()
		if file != "" && p.mountOf(cfg.Path(file)) == nil {
			t.Errorf("%s: %s %s is in no mounted volume", p, key, cfg.Path(file))
		}
	}
	write := func(key, dir string, needed bool) {
		t.Helper()
		switch {
		case dir == "off":
		case dir == "" && needed:
			t.Errorf("%s: %s is not set: the default (the user cache directory) is on the read-only root filesystem; name the emptyDir, or off", p, key)
		case dir != "":
			if m := p.mountOf(cfg.Path(dir)); m == nil || !m.writable {
				t.Errorf("%s: %s %s is not in a writable emptyDir: the root filesystem is read-only", p, key, cfg.Path(dir))
			}
		}
	}
	if cfg.Policy.Dir != "" {
		dir := path.Clean(cfg.Path(cfg.Policy.Dir))
		if m := p.mountOf(dir); m == nil || m.configMap == nil {
			t.Errorf("%s: policy.dir %s is in no ConfigMap volume", p, dir)
		}
	}
	read("policy.bundle_file", cfg.Policy.BundleFile)
	read("policy.verification_key_file", cfg.Policy.VerificationKeyFile)
	write("policy.persist_dir", cfg.Policy.PersistDir, cfg.Policy.BundleURL != "")
	remote := false
	for i, is := range cfg.Tokens.Issuers {
		remote = remote || is.JWKSURL != "" || is.Discovery
		for key, file := range map[string]string{
			"jwks_file": is.JWKSFile, "public_key_file": is.PublicKeyFile,
			"hmac_secret_file": is.HMACSecretFile, "ca_file": is.CAFile,
		} {
			read(fmt.Sprintf("tokens.issuers[%d].%s", i, key), file)
		}
	}
	write("tokens.jwks_persist_dir", cfg.Tokens.JWKSPersistDir, remote)
	if cfg.TLS != nil {
		read("tls.cert_file", cfg.TLS.CertFile)
		read("tls.key_file", cfg.TLS.KeyFile)
		read("tls.client_ca_file", cfg.TLS.ClientCAFile)
	}
	read("callers.trust_bundle_file", cfg.Callers.TrustBundleFile)
	if out := cfg.DecisionLog.Output; out != "" && out != "stdout" && out != "off" {
		if m := p.mountOf(cfg.Path(out)); m == nil || !m.writable {
			t.Errorf("%s: decision_log %s is not in a writable emptyDir: the root filesystem is read-only", p, cfg.Path(out))
		}
	}
}

// pinnedImage is an image named by its digest (repository@sha256:…),
// with no tag beside it.
var pinnedImage = regexp.MustCompile(`^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9._/-]+@sha256:[0-9a-f]{64}$`)

// checkImage checks that the overlay's images: entry pinned Verdict's
// image by digest in a registry: a tag (newTag: dev, :latest) can be moved
// to other content, a digest cannot.
func checkImage(t *testing.T, p *verdictPod) {
	t.Helper()
	if !pinnedImage.MatchString(p.container.Image) {
		t.Errorf("%s: image %q, want registry/repository@sha256:<digest> (images: with newName and digest in the kustomization, no newTag)", p, p.container.Image)
	}
}

// checkPod runs every check of one pod.
func checkPod(t *testing.T, p *verdictPod, h http.Handler) {
	t.Helper()
	checkImage(t, p)
	checkDiagnosticAddr(t, p)
	checkProbes(t, p, h)
	checkSecurity(t, p)
	checkLifecycle(t, p)
	checkResources(t, p)
	checkPaths(t, p)
	sel, err := metav1.LabelSelectorAsSelector(p.deployment.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(p.deployment.Spec.Template.Labels)) {
		t.Errorf("%s: the selector %v does not select the pod template's labels %v", p, p.deployment.Spec.Selector, p.deployment.Spec.Template.Labels)
	}
}

// selects reports whether a label selector selects the pod, in its
// namespace.
func selects(sel *metav1.LabelSelector, namespace string, p *verdictPod) bool {
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && !s.Empty() && namespace == p.deployment.Namespace &&
		s.Matches(labels.Set(p.deployment.Spec.Template.Labels))
}

// checkServices checks every Service: it selects a Verdict pod that does
// not listen on loopback only, and each port targets Verdict's port.
func checkServices(t *testing.T, m *manifest, pods []*verdictPod) {
	t.Helper()
	for _, svc := range objectsOf[*corev1.Service](m) {
		var p *verdictPod
		for _, q := range pods {
			if len(svc.Spec.Selector) > 0 && svc.Namespace == q.deployment.Namespace &&
				labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(q.deployment.Spec.Template.Labels)) {
				p = q
			}
		}
		if p == nil {
			t.Errorf("Service %s selects %v, no Verdict pod", svc.Name, svc.Spec.Selector)
			continue
		}
		if p.loopback() {
			t.Errorf("Service %s selects %s, which listens on %s only", svc.Name, p, p.addr)
		}
		for _, sp := range svc.Spec.Ports {
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			if port, ok := resolvePort(p.container, target); !ok || port != p.port {
				t.Errorf("Service %s port %s targets %s (%d), Verdict listens on %s", svc.Name, sp.Name, target.String(), port, p.addr)
			}
		}
	}
}

// checkShared checks what a shared Verdict needs around its pods: a
// Service, a PodDisruptionBudget and a NetworkPolicy (checkNetworkPolicy,
// egress included) that select them, and a HorizontalPodAutoscaler that
// scales their Deployment.
func checkShared(t *testing.T, m *manifest, p *verdictPod) {
	t.Helper()
	if p.loopback() {
		t.Errorf("%s listens on %s: other pods cannot reach it", p, p.addr)
	}
	if !slices.ContainsFunc(objectsOf[*corev1.Service](m), func(s *corev1.Service) bool {
		return len(s.Spec.Selector) > 0 && selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, s.Namespace, p)
	}) {
		t.Errorf("no Service selects %s", p)
	}

	pdbs := objectsOf[*policyv1.PodDisruptionBudget](m)
	if !slices.ContainsFunc(pdbs, func(b *policyv1.PodDisruptionBudget) bool { return selects(b.Spec.Selector, b.Namespace, p) }) {
		t.Errorf("no PodDisruptionBudget selects %s", p)
	}

	var hpa *autoscalingv2.HorizontalPodAutoscaler
	for _, h := range objectsOf[*autoscalingv2.HorizontalPodAutoscaler](m) {
		ref := h.Spec.ScaleTargetRef
		if h.Namespace == p.deployment.Namespace && ref.APIVersion == "apps/v1" && ref.Kind == "Deployment" && ref.Name == p.deployment.Name {
			hpa = h
		}
	}
	switch {
	case hpa == nil:
		t.Errorf("no HorizontalPodAutoscaler scales Deployment %s", p.deployment.Name)
	default:
		minReplicas := int32(1) // the API's default
		if hpa.Spec.MinReplicas != nil {
			minReplicas = *hpa.Spec.MinReplicas
		}
		if minReplicas < 2 || hpa.Spec.MaxReplicas < minReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: replicas %d to %d, want at least 2 (the PodDisruptionBudget lets one go)", hpa.Name, minReplicas, hpa.Spec.MaxReplicas)
		}
		if p.deployment.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas: every apply would reset what HorizontalPodAutoscaler %s chose", p.deployment.Name, hpa.Name)
		}
		if len(hpa.Spec.Metrics) == 0 {
			t.Errorf("HorizontalPodAutoscaler %s has no metrics", hpa.Name)
		}
		for _, mt := range hpa.Spec.Metrics {
			if mt.Resource != nil && mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType {
				for _, c := range p.spec.Containers {
					if _, ok := c.Resources.Requests[mt.Resource.Name]; !ok {
						t.Errorf("HorizontalPodAutoscaler %s scales on %s utilization, but container %s requests no %s", hpa.Name, mt.Resource.Name, c.Name, mt.Resource.Name)
					}
				}
			}
		}
	}

	checkNetworkPolicy(t, m, p, true)
}

// TestKustomizeBase renders the base alone: the configuration, whose
// ConfigMap's name carries a hash of its content (Verdict reads it at
// start, so a change must roll the pods), and the policies, whose name does
// not (an edit updates the watched directory in place).
func TestKustomizeBase(t *testing.T) {
	m := render(t, filepath.Join("kubernetes", "base"))
	var names []string
	for _, cm := range objectsOf[*corev1.ConfigMap](m) {
		names = append(names, cm.Name)
	}
	if !slices.ContainsFunc(names, func(n string) bool { return strings.HasPrefix(n, "verdict-config-") }) {
		t.Errorf("ConfigMaps %q: want verdict-config with a hash suffix, so that a configuration change rolls the pods", names)
	}
	if !slices.Contains(names, "verdict-policies") {
		t.Errorf("ConfigMaps %q: want verdict-policies without a hash suffix, so that a policy edit reloads in place", names)
	}
}

// TestKustomizeSharedService checks overlays/shared-service: one Verdict
// Deployment other pods reach through its Service, and what goes with it;
// then the real binary runs its container's arguments, configuration and
// policies.
func TestKustomizeSharedService(t *testing.T) {
	m, p := renderOverlay(t, "shared-service")
	if p.sidecar {
		t.Errorf("%s is a sidecar, want the Deployment's container", p)
	}
	checkPod(t, p, routes(t))
	checkServices(t, m, []*verdictPod{p})
	checkShared(t, m, p)
	if t.Failed() {
		return
	}
	runPod(t, p)
}

// TestKustomizeSidecar checks overlays/sidecar: Verdict as a native
// sidecar beside an application, on loopback only, with no probes and no
// Service reaching it; then the real binary runs it.
func TestKustomizeSidecar(t *testing.T) {
	m, p := renderOverlay(t, "sidecar")
	if !p.sidecar {
		t.Errorf("%s is not a native sidecar (an init container with restartPolicy Always): it would not start before the application", p)
	}
	if !p.loopback() {
		t.Errorf("%s listens on %s, want loopback only", p, p.addr)
	}
	if p.diagAddr == "" || isLoopback(p.diagAddr) || p.container.StartupProbe == nil || p.container.ReadinessProbe == nil {
		t.Errorf("%s: diagnostic address %q: want one on the pod's address, with startup and readiness probes on it", p, p.diagAddr)
	}
	if len(p.spec.Containers) == 0 {
		t.Errorf("%s: no application container", p)
	}
	checkPod(t, p, routes(t))
	checkServices(t, m, []*verdictPod{p})
	checkNetworkPolicy(t, m, p, false)
	if t.Failed() {
		return
	}
	runPod(t, p)
}

// layout is a pod's Verdict laid out on this machine: each volume in a
// directory (ConfigMaps as the kubelet writes them, with the ..data
// symlink it swaps on every update), and the configuration's identity
// providers replaced by one on this machine, with a token from each.
type layout struct {
	p       *verdictPod
	dirs    map[string]string // mount path → directory here
	keysDir string            // the identity provider's CA certificate (ca.pem)
	args    []string          // the container's arguments, to run
	tokens  []string          // one per identity provider replaced
}

// testKeysPath is where keysDir is mounted in a container.
const testKeysPath = "/etc/verdict/test-keys"

// host returns the directory here that stands for a path in the
// container; "" when no volume holds it.
func (l *layout) host(p string) string {
	m := l.p.mountOf(p)
	if m == nil {
		return ""
	}
	return l.dirs[m.path] + strings.TrimPrefix(p, m.path)
}

// layOut lays out p's volumes under a temporary directory. In a container
// (inContainer) the volumes are mounted where the pod mounts them, so
// paths stay as they are; else every path into a volume is rewritten to
// its directory here. Either way the identity providers (discovery,
// jwks_url) are the one thing a test cannot reach: each such issuer
// fetches its keys from a key set served over TLS on this machine's
// loopback instead, and keeps everything else (its name, audiences,
// algorithms, refresh bounds, and tokens.jwks_persist_dir).
func layOut(t *testing.T, p *verdictPod, inContainer bool) *layout {
	t.Helper()
	root := t.TempDir()
	l := &layout{p: p, dirs: map[string]string{}, keysDir: filepath.Join(root, "keys")}
	for i, m := range p.mounts {
		l.dirs[m.path] = filepath.Join(root, fmt.Sprintf("volume-%d-%s", i, m.volume.Name))
	}
	hostPath := func(s string) string {
		if h := l.host(s); h != "" && !inContainer {
			return h
		}
		return s
	}

	var jwks atomic.Pointer[[]byte]
	idp := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(*jwks.Load())
	}))
	ca, err := os.ReadFile(authztest.StartTLS(t, idp))
	if err != nil {
		t.Fatal(err)
	}
	authztest.WriteFile(t, filepath.Join(l.keysDir, "ca.pem"), string(ca))
	caFile := filepath.Join(l.keysDir, "ca.pem")
	if inContainer {
		caFile = path.Join(testKeysPath, "ca.pem")
	}
	cfgData, issuers := rewriteConfig(t, p.cfgData, hostPath, idp.URL+"/jwks.json", caFile)
	set := authztest.JWKS(t, issuers...)
	jwks.Store(&set)
	for _, is := range issuers {
		l.tokens = append(l.tokens, is.Mint(t, map[string]any{"roles": []string{"viewer"}}))
	}

	cfgMount := p.mountOf(p.cfgPath)
	cfgKey, _ := filepath.Rel(cfgMount.path, p.cfgPath)
	for _, m := range p.mounts {
		dir := l.dirs[m.path]
		switch {
		case m.configMap != nil:
			files := maps.Clone(m.configMap.Data)
			if m.path == cfgMount.path {
				files[cfgKey] = cfgData
			}
			writeConfigMapVolume(t, dir, files)
		default: // an emptyDir: writable by anyone, as the kubelet makes it
			if err := os.MkdirAll(dir, 0o777); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range expandArgs(t, p, "127.0.0.1") {
		l.args = append(l.args, hostPath(a))
	}
	// Listen on free ports of this machine's loopback (the last flag wins).
	l.args = append(l.args, "--addr", "127.0.0.1:0")
	if p.diagAddr != "" {
		l.args = append(l.args, "--diagnostic-addr", "127.0.0.1:0")
	}
	return l
}

// rewriteConfig returns the configuration with every string moved by
// hostPath, and each issuer that fetches its keys (discovery, jwks_url)
// fetching them from jwksURL, trusting caFile, instead. It returns a test
// issuer for each, with the issuer's name, first audience and first
// algorithm a test can mint.
func rewriteConfig(t *testing.T, data string, hostPath func(string) string, jwksURL, caFile string) (string, []*authztest.Issuer) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(data), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Content) == 0 {
		t.Fatal("the configuration is empty")
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
			n.Value = hostPath(n.Value)
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)

	str := func(v string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v} }
	var issuers []*authztest.Issuer
	for _, is := range yamlMapping(yamlMapping(doc.Content[0], "tokens"), "issuers").Content {
		var c config.Issuer
		if err := is.Decode(&c); err != nil {
			t.Fatal(err)
		}
		if !c.Discovery && c.JWKSURL == "" {
			continue
		}
		var kept []*yaml.Node // the issuer without its key source
		for i := 0; i+1 < len(is.Content); i += 2 {
			switch is.Content[i].Value {
			case "discovery", "jwks_url", "ca_file":
			default:
				kept = append(kept, is.Content[i], is.Content[i+1])
			}
		}
		is.Content = append(kept, str("jwks_url"), str(jwksURL), str("ca_file"), str(caFile))
		alg := ""
		for _, a := range c.Algorithms {
			if slices.Contains([]string{"ES256", "ES384", "EdDSA", "RS256", "PS256"}, a) {
				alg = a
				break
			}
		}
		if alg == "" || len(c.Audiences) == 0 {
			t.Fatalf("issuer %s: no algorithm among %v that a test can mint, or no audience", c.Issuer, c.Algorithms)
		}
		ti := authztest.NewIssuer(t, alg)
		ti.Name, ti.Audience = c.Issuer, c.Audiences[0]
		issuers = append(issuers, ti)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return string(out), issuers
}

// yamlMapping returns the value of key in mapping n; an empty node when
// there is none.
func yamlMapping(n *yaml.Node, key string) *yaml.Node {
	if n != nil && n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				return n.Content[i+1]
			}
		}
	}
	return &yaml.Node{}
}

// writeConfigMapVolume writes files into dir as the kubelet's atomic
// writer does, and updates them as it does: the files go into a new
// timestamped directory, a ..data_tmp symlink to it is renamed over ..data,
// each key is a symlink through ..data, and the old directory is removed.
func writeConfigMapVolume(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	ts := time.Now().UTC().Format("..2006_01_02_15_04_05.000000000")
	for k, v := range files {
		f := filepath.Join(dir, ts, k)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, ts), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(ts, filepath.Join(dir, "..data_tmp")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for k := range files {
		top := strings.SplitN(k, "/", 2)[0]
		link := filepath.Join(dir, top)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", top), link); err != nil {
			t.Fatal(err)
		}
	}
	if old != "" {
		if err := os.RemoveAll(filepath.Join(dir, old)); err != nil {
			t.Fatal(err)
		}
	}
}

// runPod runs the pod's Verdict with the binary this test builds: its
// container arguments (which the CLI parses), its configuration (which
// serve loads) and its policies, laid out as the kubelet lays them out.
func runPod(t *testing.T, p *verdictPod) {
	t.Helper()
	l := layOut(t, p, false)
	cmd := exec.Command(verdictBinary(t), l.args...)
	vp := startProc(t, "verdict", cmd)
	exercise(t, l, vp)
}

// exercise drives a started Verdict of a layout as the kubelet and a
// client would: it waits for readiness, asks each probe's path, asks for a
// decision with a token of each issuer, edits the policy ConfigMap as the
// kubelet does and waits for the new revision, then stops it with SIGTERM
// and wants a clean exit within the shutdown timeout.
func exercise(t *testing.T, l *layout, vp *proc) {
	t.Helper()
	p := l.p
	base := vp.baseURL(t)
	revision := waitReady(t, vp, base, "")
	probeBase := base
	if p.diagAddr != "" {
		probeBase = vp.diagnosticURL(t)
	}
	for _, pr := range []*corev1.Probe{p.container.StartupProbe, p.container.LivenessProbe, p.container.ReadinessProbe} {
		if pr != nil && pr.HTTPGet != nil {
			if code, body := fetch(t, probeBase+pr.HTTPGet.Path); code != http.StatusOK {
				t.Errorf("GET %s: %d %s", pr.HTTPGet.Path, code, body)
			}
		}
	}
	for i, tok := range l.tokens {
		body, _ := json.Marshal(map[string]any{"token": tok, "action": "orders:read"})
		resp, err := http.Post(base+"/v1/decide", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			DecisionID string            `json:"decision_id"`
			Allow      *bool             `json:"allow"`
			Reasons    []string          `json:"reasons"`
			Headers    map[string]string `json:"headers"`
		}
		err = json.NewDecoder(resp.Body).Decode(&d)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || d.DecisionID == "" || d.Allow == nil {
			t.Errorf("issuer %d: POST /v1/decide: %d %+v %v, want a decision", i, resp.StatusCode, d, err)
		}
		for _, r := range d.Reasons {
			if strings.HasPrefix(r, "token:") {
				t.Errorf("issuer %d: the token was refused: %s", i, r)
			}
		}
		// The example policy names the verified subject to the upstream.
		if h := d.Headers; d.Allow != nil && *d.Allow &&
			(h["x-verdict-subject"] == "" || h["x-verdict-roles"] != "viewer" || h["x-verdict-action"] != "orders:read") {
			t.Errorf("issuer %d: a viewer's orders:read is allowed with headers %v, want x-verdict-subject, x-verdict-roles viewer, x-verdict-action orders:read", i, h)
		}
	}
	checkExampleHeaders(t, base)

	// The key sets persisted where the configuration says, in the emptyDir
	// (the root filesystem being read-only). A set is written just after it
	// starts serving, so this waits a little.
	if dir := p.cfg.Tokens.JWKSPersistDir; len(l.tokens) > 0 && dir != "" && dir != "off" {
		deadline := time.Now().Add(5 * time.Second)
		for countFiles(l.host(p.cfg.Path(dir))) < len(l.tokens) {
			if time.Now().After(deadline) {
				t.Errorf("tokens.jwks_persist_dir %s: %d key sets persisted, want %d", dir, countFiles(l.host(p.cfg.Path(dir))), len(l.tokens))
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	// A policy edit: the kubelet swaps ..data, the watch reloads.
	if dir := p.cfg.Policy.Dir; dir != "" {
		m := p.mountOf(path.Clean(p.cfg.Path(dir)))
		files := maps.Clone(m.configMap.Data)
		files["zz_deploy_reload.rego"] = "package deploy_reload\n\nedited := true\n"
		writeConfigMapVolume(t, l.dirs[m.path], files)
		waitReady(t, vp, base, revision)
	}

	shutdown := p.cfg.Limits.ShutdownTimeout
	if shutdown == 0 {
		shutdown = server.DefaultShutdownTimeout
	}
	vp.stop(t, shutdown+stopSlack)
}

// exampleHeaders are the headers the example policy (base/policies) sets
// on every allow, and the upstream reads.
var exampleHeaders = []string{"x-verdict-action", "x-verdict-subject", "x-verdict-roles"}

// checkExampleHeaders checks the example policy's headers rule against a
// running Verdict: an anonymous request for a public action is allowed
// with every identity header present and empty, so that a proxy copying
// them replaces a client's own x-verdict-subject rather than letting it
// through; a denied one carries none.
func checkExampleHeaders(t *testing.T, base string) {
	t.Helper()
	decide := func(action string) (bool, map[string]string) {
		body, _ := json.Marshal(map[string]any{"action": action})
		resp, err := http.Post(base+"/v1/decide", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var d struct {
			Allow   bool              `json:"allow"`
			Headers map[string]string `json:"headers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /v1/decide %s: %d %v", action, resp.StatusCode, err)
		}
		return d.Allow, d.Headers
	}
	allow, h := decide("catalog:read")
	if !allow {
		t.Fatalf("an anonymous catalog:read is denied: the example policy's public action")
	}
	for _, k := range exampleHeaders {
		v, ok := h[k]
		switch {
		case !ok:
			t.Errorf("an anonymous allow has no %s header: a proxy copying it would leave the client's own in place (headers %v)", k, h)
		case k != "x-verdict-action" && v != "":
			t.Errorf("an anonymous allow sets %s %q, want empty", k, v)
		}
	}
	if allow, h := decide("orders:write"); allow || len(h) > 0 {
		t.Errorf("an anonymous orders:write: allow %v, headers %v; want a deny without headers", allow, h)
	}
	// Forward-auth and ext_authz carry a method and a path, no action name:
	// the example policy names the action from them (GET /catalog/items is
	// catalog:read), or it would deny every such request.
	resp, err := http.Get(base + "/v1/check/catalog/items")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Verdict-Action") != "catalog:read" {
		t.Errorf("forward-auth GET /catalog/items: %d, x-verdict-action %q; want 200 and catalog:read",
			resp.StatusCode, resp.Header.Get("X-Verdict-Action"))
	}
}

// countFiles counts the regular files under dir.
func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
