package test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/bundle"

	"github.com/verdict-pdp/verdict/authz/authztest"
	"github.com/verdict-pdp/verdict/bundles"
)

// replicaPolicy is version v of a small policy whose reasons name the
// version: v1 allows catalog:read, v2 moves the permission to catalog:write.
func replicaPolicy(v int) string {
	action := map[int]string{1: "catalog:read", 2: "catalog:write"}[v]
	return fmt.Sprintf("package authz\n\ndefault allow := false\n\nallow if input.action.name == %q\n\nreasons := {\"policy v%d\"}\n", action, v)
}

// signedBundle is an OPA bundle .tar.gz holding policy as authz/authz.rego,
// with manifest revision rev, signed with the RSA key privatePEM (RS256,
// the key id `opa build --signing-key` writes).
func signedBundle(t *testing.T, privatePEM []byte, rev, policy string) []byte {
	t.Helper()
	b := bundle.Bundle{Data: map[string]any{}, Manifest: bundle.Manifest{Revision: rev},
		Modules: []bundle.ModuleFile{{URL: "/authz/authz.rego", Path: "/authz/authz.rego", Raw: []byte(policy)}}}
	b.Manifest.Init()
	if err := b.GenerateSignature(bundle.NewSigningConfig(string(privatePEM), "RS256", ""), bundles.DefaultKeyID, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// lbAnswer is one decision answered through the load balancer.
type lbAnswer struct {
	status   int
	allow    bool
	revision string
	reasons  []string
	upstream string // the replica that answered (nginx's $upstream_addr)
	err      string
}

// decideThrough posts a catalog:read decision to base and records the answer.
func decideThrough(c *http.Client, base string) lbAnswer {
	resp, err := c.Post(base+"/v1/decide", "application/json", strings.NewReader(`{"action":"catalog:read"}`))
	if err != nil {
		return lbAnswer{err: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	r := lbAnswer{status: resp.StatusCode, upstream: resp.Header.Get("X-Upstream")}
	var a answer
	if err == nil {
		err = json.Unmarshal(body, &a)
	}
	if err != nil {
		r.err = fmt.Sprintf("%v: %q", err, body)
	}
	r.allow, r.revision, r.reasons = a.Allow, a.Revision, a.Reasons
	return r
}

// TestReplicasConverge runs three replicas polling one signed bundle from a
// real nginx (which answers ETag polls with 304 and requires the bearer
// token the replicas send through policy.bundle_headers, read from the
// environment with ${BUNDLE_TOKEN}), behind a second nginx balancing
// decisions round-robin. While clients decide continuously through the
// balancer, a new bundle revision is published: every replica serves it
// within the poll interval plus jitter (and slack), no decision fails, every
// decision is wholly one revision (reasons and allow match the revision it
// names), no replica goes back to the old revision, and afterwards every
// decision through the balancer is the new revision and the replicas'
// /v1/status agree, with build information also in /metrics.
func TestReplicasConverge(t *testing.T) {
	t.Parallel()
	begin := time.Now()
	nginx := needBinary(t, "nginx", "/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
	const poll = time.Second
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	t.Cleanup(client.CloseIdleConnections)

	privatePEM, publicPEM := rsaKeyPEM(t, 2048)
	token := rand.Text()

	// The bundle server: static files, a bearer token required.
	root := t.TempDir()
	bundlePath := filepath.Join(root, "bundles", "authz.tar.gz")
	var lastMod time.Time
	publish := func(v int) {
		t.Helper()
		tmp := bundlePath + ".tmp"
		authztest.WriteFile(t, tmp, string(signedBundle(t, privatePEM, fmt.Sprintf("v%d", v), replicaPolicy(v))))
		// nginx's ETag is the modification time in seconds and the size:
		// each version gets a later second so that its ETag differs.
		mod := time.Now().Truncate(time.Second)
		if !mod.After(lastMod) {
			mod = lastMod.Add(time.Second)
		}
		lastMod = mod
		if err := os.Chtimes(tmp, mod, mod); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, bundlePath); err != nil {
			t.Fatal(err)
		}
	}
	publish(1)
	bundlePrefix := t.TempDir()
	bundleBase := startNginx(t, nginx, bundlePrefix, "http", client, func(port int) string {
		return nginxHTTP(bundlePrefix, fmt.Sprintf(`    server {
        listen 127.0.0.1:%d;
        root %s;
        location /bundles/ {
            if ($http_authorization != "Bearer %s") { return 401; }
        }
    }
`, port, root, token))
	})
	if r := do(t, client, http.MethodGet, bundleBase+"/bundles/authz.tar.gz", nil, nil); r.Status != http.StatusUnauthorized {
		t.Fatalf("bundle without a token: %d, want 401", r.Status)
	}

	// Three replicas, each with its own configuration.
	var replicas []*process
	for range 3 {
		dir := t.TempDir()
		authztest.WriteFile(t, filepath.Join(dir, "bundle.pem"), string(publicPEM))
		authztest.WriteFile(t, filepath.Join(dir, "verdict.yaml"), fmt.Sprintf(`addr: 127.0.0.1:0
policy:
  bundle_url: %s/bundles/authz.tar.gz
  poll_interval: %s
  verification_key_file: bundle.pem
  verification_algorithm: RS256
  persist_dir: "off"
  bundle_headers:
    Authorization: "Bearer ${BUNDLE_TOKEN}"
decision_log: off
`, bundleBase, poll))
		replicas = append(replicas, startVerdict(t, startOptions{
			Args: []string{"--config", filepath.Join(dir, "verdict.yaml")}, Env: []string{"BUNDLE_TOKEN=" + token}}))
	}
	var upstreams strings.Builder
	for _, p := range replicas {
		if s, raw := status(t, p); s.Revision != "v1" {
			t.Fatalf("replica %s does not serve v1: %s", p.Addr, raw)
		}
		fmt.Fprintf(&upstreams, "        server %s;\n", p.Addr)
	}

	// The load balancer. Without retries on another replica, a replica's
	// failure reaches the client.
	lbPrefix := t.TempDir()
	lb := startNginx(t, nginx, lbPrefix, "http", client, func(port int) string {
		return nginxHTTP(lbPrefix, fmt.Sprintf(`    upstream verdicts {
%s        keepalive 8;
    }
    server {
        listen 127.0.0.1:%d;
        location / {
            proxy_pass http://verdicts;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_next_upstream off;
            add_header X-Upstream $upstream_addr always;
        }
    }
`, upstreams.String(), port))
	})

	// Clients decide through the balancer until told to stop.
	const workers = 4
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		count   atomic.Int64
		results [workers][]lbAnswer
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				results[w] = append(results[w], decideThrough(client, lb))
				count.Add(1)
			}
		}()
	}
	stopLoad := func() { stop.Store(true); wg.Wait() }
	defer stopLoad()
	eventually(t, 5*time.Second, func() string {
		if n := count.Load(); n < 50 {
			return fmt.Sprintf("%d decisions through the balancer", n)
		}
		return ""
	})

	// Publish v2; every replica's own /v1/status shows it in time.
	publish(2)
	published := time.Now()
	bound := poll*11/10 + 3*time.Second
	converged := make([]time.Duration, len(replicas))
	for pending := len(replicas); pending > 0; time.Sleep(20 * time.Millisecond) {
		for i, p := range replicas {
			if s, _ := status(t, p); converged[i] == 0 && s.Revision == "v2" {
				converged[i] = time.Since(published)
				pending--
			}
		}
		if pending > 0 && time.Since(published) > bound {
			t.Fatalf("not every replica serves v2 within %v of publishing: %v", bound, converged)
		}
	}
	for i, p := range replicas {
		t.Logf("replica %s serves v2 after %v", p.Addr, converged[i].Round(time.Millisecond))
	}
	stopLoad()

	// Then every decision through the balancer is v2.
	var burst []lbAnswer
	for range 50 {
		burst = append(burst, decideThrough(client, lb))
	}

	// No decision failed, none mixed revisions, no replica went back.
	byRev, byUpstream, failures := map[string]int{}, map[string]int{}, 0
	judge := func(a lbAnswer) {
		if a.err != "" || a.status != http.StatusOK || !slices.Equal(a.reasons, []string{"policy " + a.revision}) ||
			a.allow != (a.revision == "v1") {
			if failures++; failures <= 5 {
				t.Errorf("answer through the balancer: %+v", a)
			}
		}
		byRev[a.revision]++
		byUpstream[a.upstream]++
	}
	for w := range workers {
		onV2 := map[string]bool{}
		for _, a := range results[w] {
			judge(a)
			if a.revision == "v1" && onV2[a.upstream] {
				t.Errorf("replica %s answered v1 after v2", a.upstream)
			}
			onV2[a.upstream] = onV2[a.upstream] || a.revision == "v2"
		}
	}
	t.Logf("under load: %d decisions, by revision %v, by replica %v", count.Load(), byRev, byUpstream)
	if byRev["v1"] == 0 || byRev["v2"] == 0 {
		t.Errorf("the load did not span the change: %v", byRev)
	}
	for _, a := range burst {
		judge(a)
		if a.revision != "v2" {
			t.Errorf("after convergence, %s answered revision %q", a.upstream, a.revision)
		}
	}
	if failures > 0 {
		t.Errorf("%d of %d answers failed or mixed revisions", failures, int(count.Load())+len(burst))
	}
	for _, p := range replicas {
		if byUpstream[p.Addr] == 0 {
			t.Errorf("replica %s answered no decision through the balancer: %v", p.Addr, byUpstream)
		}
	}

	// The replicas agree in /v1/status and describe their build.
	for _, p := range replicas {
		s, raw := status(t, p)
		var more struct {
			Source struct {
				Revision string `json:"revision"`
			} `json:"source"`
			Build struct {
				Version string `json:"version"`
			} `json:"build"`
		}
		if err := json.Unmarshal([]byte(raw), &more); err != nil {
			t.Fatal(err)
		}
		if !s.Ready || s.Revision != "v2" || s.Source == nil || more.Source.Revision != "v2" ||
			s.Source.LastError != "" || len(s.Source.Errors) != 0 || s.LastError != nil {
			t.Errorf("replica %s /v1/status does not show v2 without error: %s", p.Addr, raw)
		}
		if more.Build.Version == "" {
			t.Errorf("replica %s /v1/status has no build.version: %s", p.Addr, raw)
		}
		if !strings.Contains(metrics(t, p), "verdict_build_info{") {
			t.Errorf("replica %s /metrics: no verdict_build_info{", p.Addr)
		}
	}

	// The replicas poll with the ETag: nginx answers 304 once nothing changed.
	eventually(t, 2*poll+3*time.Second, func() string {
		b, _ := os.ReadFile(filepath.Join(bundlePrefix, "access.log"))
		if !bytes.Contains(b, []byte(`"GET /bundles/authz.tar.gz HTTP/1.1" 304 `)) {
			return "no 304 in the bundle server's access log:\n" + string(b)
		}
		return ""
	})
	t.Logf("test took %v", time.Since(begin).Round(time.Millisecond))
}
