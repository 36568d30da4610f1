// Command gen prepares the HTTP load comparison of Verdict against OPA's own
// server (`opa run --server`), for test/load/run.sh, and checks that both
// servers answer each workload as designed.
//
//	gen -out DIR -alg RS256 [-n 1000] [-new 150000] [-workloads "cached cert rest new5k newall abac"]
//	gen check -url http://127.0.0.1:PORT -server verdict|opa -dir DIR/<alg>/<workload> [-from-end]
//
// Generation makes a signing key (and, for the cert workload, a CA and
// service certificates) at run time, mints the token pools, and writes
// everything both servers and wrk need into -out, which run.sh makes a
// temporary directory and deletes on exit. Private keys live only in this
// process's memory; only public keys and certificates are written.
//
//	<out>/load.lua                 wrk script: expands request templates with a token pool
//	<out>/<alg>/tokens.txt         -n tokens, roles ["viewer"], one a line
//	<out>/<alg>/tokens-abac.txt    -n tokens with a tenant claim, roles ["editor"]:
//	                               token, sub, tenant and another tenant, tab-separated
//	<out>/<alg>/tokens-new5k.txt   -new tokens cycling 5,000 subjects (none of them tokens.txt's)
//	<out>/<alg>/tokens-newall.txt  -new tokens, every one a distinct subject
//	<out>/<alg>/<workload>/
//	    workload.conf              what run.sh needs: pools, fresh, api, designed allow share
//	    verdict.tmpl, opa.tmpl     one request template a line (see below), the same
//	                               questions to each server
//	    expect.txt                 per template: allow|deny, a reason both servers give, what it is
//	    verdict/verdict.yaml       Verdict's configuration (+ pub.pem, policy/, ca.pem)
//	    opa/config.yaml            OPA's configuration (io_jwt cache on)
//	    opa/bundle/                OPA's policy (test/load/opabaseline) and data.json
//
// A request template is one line of tab-separated fields: method, path,
// headers ("Name: value"), and last the body (empty for none). In any field
// @1@ … @9@ are the fields of the token line the request uses (@1@ is the
// token) and @N@ is the request's number: wrk's first request number (an
// argument; run.sh never repeats a number within one server process) plus
// r×T+k for thread k of T's r-th request, so no two requests share it. wrk's
// thread k of T sends the pool's lines k, k+T, k+2T, … round-robin, its r-th
// request with template r mod (number of templates), so every thread asks
// the designed mix of questions.
//
// check sends each template with two token lines of the workload's pool (the
// last ones with -from-end, which a measured run of a new-token pool never
// reaches) and fails unless every answer is the designed allow or deny with
// the designed reason.
package main

import (
	"bufio"
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/examples"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

const (
	issuer   = "https://issuer.load.test"
	audience = "verdict-load"
	// trustDomain names the services of the cert workload.
	trustDomain = "spiffe://load.test/ns/shop/sa/"
)

// allWorkloads are the workloads, in the order run.sh runs them.
var allWorkloads = []string{"cached", "cert", "rest", "new5k", "newall", "abac"}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "check" {
		if err := check(os.Args[2:]); err != nil {
			fail(err)
		}
		return
	}
	out := flag.String("out", "", "output directory (required)")
	alg := flag.String("alg", "RS256", "signing algorithm: RS256 or ES256")
	n := flag.Int("n", 1000, "size of the cycled token pools")
	nNew := flag.Int("new", 0, "size of each every-token-new pool (new5k, newall)")
	wl := flag.String("workloads", strings.Join(allWorkloads, " "), "workloads to prepare")
	ttl := flag.Duration("ttl", 3*time.Hour, "token lifetime")
	flag.Parse()
	if *out == "" {
		fail(errors.New("-out is required"))
	}
	names := strings.Fields(*wl)
	for _, name := range names {
		if !slices.Contains(allWorkloads, name) {
			fail(fmt.Errorf("unknown workload %q (want some of: %s)", name, strings.Join(allWorkloads, " ")))
		}
	}
	if *n < 16 {
		fail(errors.New("-n must be at least 16"))
	}
	if err := generate(*out, *alg, *n, *nNew, names, *ttl); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

// tcase is one request template of a workload and its designed answer.
type tcase struct {
	verdict, opa string // request templates (see the package documentation)
	allow        bool
	reason       string // a substring of a reason both servers give
	what         string
}

// workload is everything one workload needs on both sides.
type workload struct {
	name  string
	api   string // Verdict's decision metric label: decide or check
	pool  string // the measured token pool
	warm  string // the pool the warm-up cycles (never a new-token pool)
	fresh bool   // a new-token pool: a fresh server per measured run
	// Verdict: the example policy set served ("" = the embedded default);
	// callers: trust 127.0.0.1 to forward a certificate chaining to ca.pem.
	policy  string
	callers bool
	// OPA: modules and data.
	opaModules map[string]string
	opaData    map[string]any
	cases      []tcase
}

func generate(out, alg string, n, nNew int, names []string, ttl time.Duration) error {
	dir := filepath.Join(out, strings.ToLower(alg))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(out, "load.lua"), []byte(luaScript), 0o600); err != nil {
		return err
	}
	s, err := newSigner(alg)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(s.public)
	if err != nil {
		return err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	jwks := string(s.jwks())
	want := func(name string) bool { return slices.Contains(names, name) }

	now := time.Now()
	pools := []struct {
		file   string
		count  int
		needed bool
		line   func(i int) (claims map[string]any, fields []string)
	}{
		{"tokens.txt", n, want("cached") || want("cert") || want("rest") || want("new5k") || want("newall"),
			func(i int) (map[string]any, []string) {
				return map[string]any{"sub": "user-" + strconv.Itoa(i%5000), "jti": "pool-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
			}},
		{"tokens-abac.txt", n, want("abac"), func(i int) (map[string]any, []string) {
			sub, tenant, other := "user-"+strconv.Itoa(i), "tenant-"+strconv.Itoa(i%50), "tenant-"+strconv.Itoa((i+1)%50)
			return map[string]any{"sub": sub, "jti": "abac-" + strconv.Itoa(i), "tenant": tenant, "roles": []string{"editor"}},
				[]string{sub, tenant, other}
		}},
		// Subjects apart from the warm-up pool's (user-0 … user-999), so that
		// a measured run starts with none of its subjects seen.
		{"tokens-new5k.txt", nNew, want("new5k"), func(i int) (map[string]any, []string) {
			return map[string]any{"sub": "user5k-" + strconv.Itoa(i%5000), "jti": "new5k-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
		}},
		{"tokens-newall.txt", nNew, want("newall"), func(i int) (map[string]any, []string) {
			return map[string]any{"sub": "user-new-" + strconv.Itoa(i), "jti": "newall-" + strconv.Itoa(i), "roles": []string{"viewer"}}, nil
		}},
	}
	for _, p := range pools {
		if !p.needed {
			continue
		}
		if p.count < 1 {
			return fmt.Errorf("%s: pool size %d (set -new for the new-token workloads)", p.file, p.count)
		}
		if err := mintFile(filepath.Join(dir, p.file), s, p.count, now, ttl, p.line); err != nil {
			return err
		}
	}

	var pki *callerPKI
	if want("cert") {
		if pki, err = newCallerPKI(now); err != nil {
			return err
		}
	}
	for _, name := range names {
		w, err := newWorkload(name, alg, jwks, pki)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if err := w.write(filepath.Join(dir, name), alg, pubPEM, pki); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

// Request templates. Verdict's /v1/decide and OPA's data API take the same
// JSON question; OPA's wraps it in {"input": ...}.
func decideTemplate(body string) string {
	return "POST\t/v1/decide\tContent-Type: application/json\t" + body
}

func opaTemplate(input string) string {
	return "POST\t/v1/data/opa_authz/decision\tContent-Type: application/json\t{\"input\":" + input + "}"
}

// jsonBody marshals v without HTML escaping (the templates' placeholders and
// PEM stay readable; the JSON is the same).
func jsonBody(v any) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		fail(err)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// sameQuestion is a case asked as the same JSON to both servers.
func sameQuestion(body map[string]any, allow bool, reason, what string) tcase {
	b := jsonBody(body)
	return tcase{verdict: decideTemplate(b), opa: opaTemplate(b), allow: allow, reason: reason, what: what}
}

func newWorkload(name, alg, jwks string, pki *callerPKI) (*workload, error) {
	defaultData, err := readData(policies.FS())
	if err != nil {
		return nil, err
	}
	params := opabaseline.Params{Constraint: "cert", Issuer: issuer, Audience: audience, Action: "input.action"}
	w := &workload{name: name, api: "decide", pool: "tokens.txt", warm: "tokens.txt"}
	readViewer := sameQuestion(map[string]any{"token": "@1@", "action": "orders:read"}, true, "role viewer grants orders:read", "a viewer reads an order")
	switch name {
	case "cached", "new5k", "newall":
		// The default policy; the action is a string in the /v1/decide body.
		policy, err := opabaseline.Policy(params)
		if err != nil {
			return nil, err
		}
		w.opaModules = map[string]string{"policy.rego": policy}
		w.opaData = opabaseline.Data(defaultData, jwks)
		w.cases = []tcase{readViewer}
		if name != "cached" {
			w.pool, w.fresh = "tokens-"+name+".txt", true
		}
	case "rest":
		// Forward-auth: the action is named from the method and path.
		params.Action = opabaseline.RESTAction
		policy, err := opabaseline.Policy(params)
		if err != nil {
			return nil, err
		}
		w.api = "check"
		w.opaModules = map[string]string{"policy.rego": policy, "rest.rego": opabaseline.RESTModule()}
		w.opaData = opabaseline.Data(defaultData, jwks)
		rest := func(method string, allow bool, reason string) tcase {
			return tcase{
				verdict: "GET\t/v1/check\tX-Forwarded-Method: " + method + "\tX-Forwarded-Uri: /orders/@N@\tAuthorization: Bearer @1@\t",
				opa:     opaTemplate(jsonBody(map[string]any{"method": method, "path": "/orders/@N@", "token": "@1@"})),
				allow:   allow, reason: reason, what: "a viewer: " + method + " /orders/<new id>",
			}
		}
		get := rest("GET", true, "role viewer grants orders:read")
		w.cases = []tcase{get, get, rest("POST", false, "no role grants orders:write"), get,
			get, rest("DELETE", false, "no role grants orders:delete"), get, get}
	case "cert":
		policy, err := opabaseline.CallerPolicy(params)
		if err != nil {
			return nil, err
		}
		data, err := exampleData("caller")
		if err != nil {
			return nil, err
		}
		w.policy, w.callers = "caller", true
		w.opaModules = map[string]string{"policy.rego": policy}
		w.opaData = opabaseline.Data(data, jwks)
		w.opaData["opa_bench"].(map[string]any)["ca"] = string(pki.caPEM)
		q := func(svc, action string, allow bool, reason string) tcase {
			body := map[string]any{"token": "@1@", "action": action, "caller": map[string]any{"certificate": string(pki.leaves[svc])}}
			return sameQuestion(body, allow, reason, "a viewer asks "+action+" through service "+svc)
		}
		w.cases = []tcase{
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("payments", "orders:read", true, "role viewer grants orders:read to service payments"),
			q("reports", "orders:read", false, "service reports may not call orders:read"),
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("payments", "orders:read", true, "role viewer grants orders:read to service payments"),
			q("web", "orders:write", false, "no role grants orders:write"),
			q("web", "orders:read", true, "role viewer grants orders:read to service web"),
			q("unknown", "orders:read", false, "caller "+trustDomain+"unknown is not a known service"),
		}
	case "abac":
		policy, err := opabaseline.ABACPolicy(params)
		if err != nil {
			return nil, err
		}
		data, err := exampleData("abac")
		if err != nil {
			return nil, err
		}
		w.policy, w.pool, w.warm = "abac", "tokens-abac.txt", "tokens-abac.txt"
		w.opaModules = map[string]string{"policy.rego": policy}
		w.opaData = opabaseline.Data(data, jwks)
		// Token line fields: @1@ token, @2@ sub, @3@ tenant, @4@ another tenant.
		q := func(action, owner, tenant string, allow bool, reason, what string) tcase {
			body := map[string]any{"token": "@1@", "action": action,
				"resource": map[string]any{"type": "order", "id": "@N@", "owner": owner, "tenant": tenant}}
			return sameQuestion(body, allow, reason, what)
		}
		w.cases = []tcase{
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
			q("orders:write", "@2@", "@3@", true, "role editor grants orders:write in tenant", "write own order"),
			q("orders:read", "@2@", "@3@", true, "role editor grants orders:read in tenant", "read own order"),
			q("orders:write", "user-someone", "@3@", false, "only the owner may orders:write", "write another's order"),
			q("orders:read", "@2@", "@4@", false, "the subject is not in tenant", "read in another tenant"),
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
			q("orders:delete", "@2@", "@3@", false, "no role grants orders:delete", "delete own order"),
			q("orders:read", "user-someone", "@3@", true, "role editor grants orders:read in tenant", "read another's order, own tenant"),
		}
	default:
		return nil, fmt.Errorf("unknown workload")
	}
	return w, nil
}

func (w *workload) allowShare() float64 {
	allow := 0
	for _, c := range w.cases {
		if c.allow {
			allow++
		}
	}
	return float64(allow) / float64(len(w.cases))
}

// write writes the workload's directory.
func (w *workload) write(dir, alg string, pubPEM []byte, pki *callerPKI) error {
	for _, d := range []string{"verdict", "opa/bundle"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return err
		}
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, "# generated by test/load/gen\npool=%s\nwarm=%s\nfresh=%d\napi=%s\nallow=%.4f\ncases=%d\n",
		w.pool, w.warm, map[bool]int{false: 0, true: 1}[w.fresh], w.api, w.allowShare(), len(w.cases))
	var vt, ot, ex strings.Builder
	for _, c := range w.cases {
		vt.WriteString(c.verdict + "\n")
		ot.WriteString(c.opa + "\n")
		fmt.Fprintf(&ex, "%s\t%s\t%s\n", map[bool]string{false: "deny", true: "allow"}[c.allow], c.reason, c.what)
	}
	files := map[string][]byte{
		"workload.conf":        []byte(conf.String()),
		"verdict.tmpl":         []byte(vt.String()),
		"opa.tmpl":             []byte(ot.String()),
		"expect.txt":           []byte(ex.String()),
		"verdict/pub.pem":      pubPEM,
		"verdict/verdict.yaml": verdictConfig(alg, w.policy != "", w.callers),
		"opa/config.yaml":      []byte(opaConfig),
	}
	for name, src := range w.opaModules {
		files["opa/bundle/"+name] = []byte(src)
	}
	data, err := json.MarshalIndent(w.opaData, "", "  ")
	if err != nil {
		return err
	}
	files["opa/bundle/data.json"] = data
	if w.callers {
		files["verdict/ca.pem"] = pki.caPEM
	}
	if w.policy != "" {
		fsys, err := examples.FS(w.policy)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, "verdict", "policy"), 0o700); err != nil {
			return err
		}
		err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, p)
			files["verdict/policy/"+p] = b
			return err
		})
		if err != nil {
			return err
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func verdictConfig(alg string, examplePolicy, callers bool) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `# Verdict configuration for the HTTP load comparison (generated).
decision_log: "off"
tokens:
  issuers:
    - issuer: %q
      audiences: [%q]
      algorithms: [%s]
      public_key_file: pub.pem
`, issuer, audience, alg)
	if examplePolicy {
		b.WriteString("policy:\n  dir: policy\n")
	}
	if callers {
		// The load generator is the proxy that forwards the calling
		// service's certificate in the /v1/decide body.
		b.WriteString("callers:\n  trusted_proxies: [127.0.0.1/32]\n  trust_bundle_file: ca.pem\n")
	}
	return []byte(b.String())
}

func readData(fsys fs.FS) (map[string]any, error) {
	raw, err := fs.ReadFile(fsys, "data.json")
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, err
	}
	return data, nil
}

func exampleData(name string) (map[string]any, error) {
	fsys, err := examples.FS(name)
	if err != nil {
		return nil, err
	}
	return readData(fsys)
}

// callerPKI is the cert workload's CA and service certificates. The keys
// are never written anywhere.
type callerPKI struct {
	caPEM  []byte
	leaves map[string][]byte // service name → leaf certificate (PEM)
}

// newCallerPKI makes an ECDSA P-256 CA and one client certificate per
// service, named by its SPIFFE ID (as SPIFFE X.509-SVIDs are): web,
// payments and reports are known services of the example's data, unknown
// chains to the CA but is not.
func newCallerPKI(now time.Time) (*callerPKI, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "verdict load-test callers CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(48 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p := &callerPKI{caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), leaves: map[string][]byte{}}
	for i, svc := range []string{"web", "payments", "reports", "unknown"} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		id, err := url.Parse(trustDomain + svc)
		if err != nil {
			return nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(100 + i)),
			Subject:      pkix.Name{CommonName: svc},
			URIs:         []*url.URL{id},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
		if err != nil {
			return nil, err
		}
		p.leaves[svc] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	}
	return p, nil
}

// signer holds a key pair generated for this run.
type signer struct {
	alg    string
	kid    string
	priv   crypto.Signer
	public crypto.PublicKey
	header string // base64url of the JOSE header
}

func newSigner(alg string) (*signer, error) {
	s := &signer{alg: alg, kid: "load-" + strings.ToLower(alg)}
	switch alg {
	case "RS256":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		s.priv, s.public = k, &k.PublicKey
	case "ES256":
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		s.priv, s.public = k, &k.PublicKey
	default:
		return nil, fmt.Errorf("unsupported -alg %q (want RS256 or ES256)", alg)
	}
	h, _ := json.Marshal(map[string]string{"alg": alg, "typ": "JWT", "kid": s.kid})
	s.header = b64(h)
	return s, nil
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (s *signer) jwks() []byte {
	jwk := map[string]any{"kid": s.kid, "alg": s.alg, "use": "sig"}
	switch pub := s.public.(type) {
	case *rsa.PublicKey:
		jwk["kty"], jwk["n"], jwk["e"] = "RSA", b64(pub.N.Bytes()), b64(big.NewInt(int64(pub.E)).Bytes())
	case *ecdsa.PublicKey:
		ek, err := pub.ECDH()
		if err != nil {
			fail(err)
		}
		raw := ek.Bytes() // 0x04 || X || Y
		l := (len(raw) - 1) / 2
		jwk["kty"], jwk["crv"], jwk["x"], jwk["y"] = "EC", "P-256", b64(raw[1:1+l]), b64(raw[1+l:])
	}
	out, _ := json.Marshal(map[string]any{"keys": []any{jwk}})
	return out
}

// mint signs a token with iss, aud, iat and exp plus claims.
func (s *signer) mint(claims map[string]any, now time.Time, ttl time.Duration) (string, error) {
	all := map[string]any{"iss": issuer, "aud": audience, "iat": now.Unix(), "exp": now.Add(ttl).Unix()}
	for k, v := range claims {
		all[k] = v
	}
	payload, err := json.Marshal(all)
	if err != nil {
		return "", err
	}
	signing := s.header + "." + b64(payload)
	sum := sha256.Sum256([]byte(signing))
	var sig []byte
	switch k := s.priv.(type) {
	case *rsa.PrivateKey:
		sig, err = rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	case *ecdsa.PrivateKey:
		var r, ss *big.Int
		r, ss, err = ecdsa.Sign(rand.Reader, k, sum[:])
		if err == nil {
			sig = make([]byte, 64) // JWS: fixed-width r || s
			r.FillBytes(sig[:32])
			ss.FillBytes(sig[32:])
		}
	}
	if err != nil {
		return "", err
	}
	return signing + "." + b64(sig), nil
}

// mintFile mints count tokens on all cores and writes one line each: the
// token, then the line's other fields, tab-separated.
func mintFile(path string, s *signer, count int, now time.Time, ttl time.Duration,
	line func(i int) (map[string]any, []string)) error {
	lines := make([]string, count)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < count; i += workers {
				claims, fields := line(i)
				t, err := s.mint(claims, now, ttl)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				lines[i] = strings.Join(append([]string{t}, fields...), "\t")
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
}

// opaConfig is OPA at its best: the io_jwt verified-token cache turned on
// (OPA v1.22.3 ships it disabled; the parsed-key cache io_jwt_keys is on by
// default). No decision logs are configured, so none are written; run.sh
// passes --log-level error, which also turns off per-request logging.
const opaConfig = `caching:
  inter_query_builtin_value_cache:
    named:
      io_jwt:
        max_num_entries: 10000
`

// --- check --------------------------------------------------------------

// checkFirstN numbers check's requests (@N@) apart from wrk's.
const checkFirstN = 900_000_000

func check(args []string) error {
	fl := flag.NewFlagSet("check", flag.ContinueOnError)
	base := fl.String("url", "", "the server's base URL, http://127.0.0.1:PORT (required)")
	server := fl.String("server", "", "verdict or opa (required)")
	dir := fl.String("dir", "", "the workload's directory (required)")
	fromEnd := fl.Bool("from-end", false, "use the pool's last token lines (new-token pools)")
	per := fl.Int("per", 2, "token lines per template")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *base == "" || *dir == "" || (*server != "verdict" && *server != "opa") {
		return errors.New("check: -url, -dir and -server verdict|opa are required")
	}
	conf, err := readConf(filepath.Join(*dir, "workload.conf"))
	if err != nil {
		return err
	}
	tmpls, err := readLines(filepath.Join(*dir, *server+".tmpl"))
	if err != nil {
		return err
	}
	expects, err := readLines(filepath.Join(*dir, "expect.txt"))
	if err != nil {
		return err
	}
	if len(tmpls) == 0 || len(tmpls) != len(expects) {
		return fmt.Errorf("check: %d templates, %d expectations", len(tmpls), len(expects))
	}
	pool, err := readLines(filepath.Join(*dir, "..", conf["pool"]))
	if err != nil {
		return err
	}
	need := len(tmpls) * *per
	if len(pool) < need {
		return fmt.Errorf("check: the pool has %d lines, %d needed", len(pool), need)
	}
	lines := pool[:need]
	if *fromEnd {
		lines = pool[len(pool)-need:]
	}
	client := &http.Client{Timeout: 10 * time.Second}
	var problems []string
	allows := 0
	for i := range need {
		j := i % len(tmpls)
		exp := strings.SplitN(expects[j], "\t", 3)
		if len(exp) < 2 {
			return fmt.Errorf("check: bad expectation %q", expects[j])
		}
		req, err := expand(tmpls[j], strings.Split(lines[i], "\t"), checkFirstN+i)
		if err != nil {
			return err
		}
		allow, reasons, err := ask(client, *base, *server, req)
		if err != nil {
			problems = append(problems, fmt.Sprintf("template %d (%s): %v", j+1, exp[2], err))
			continue
		}
		if allow {
			allows++
		}
		if allow != (exp[0] == "allow") || !slices.ContainsFunc(reasons, func(r string) bool { return strings.Contains(r, exp[1]) }) {
			problems = append(problems, fmt.Sprintf("template %d (%s): allow %v, reasons %q; designed: %s, %q",
				j+1, exp[2], allow, reasons, exp[0], exp[1]))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("check %s %s: %d of %d answers are not as designed:\n  %s", *server, filepath.Base(*dir),
			len(problems), need, strings.Join(problems, "\n  "))
	}
	fmt.Printf("check %s %s: %d answers as designed (%d allow, %d deny)\n", *server, filepath.Base(*dir), need, allows, need-allows)
	return nil
}

// request is an expanded template.
type request struct {
	method, path string
	headers      [][2]string
	body         string
}

var placeholder = regexp.MustCompile(`@([1-9N])@`)

// expand fills a template as load.lua does.
func expand(tmpl string, fields []string, n int) (request, error) {
	var bad error
	fill := func(s string) string {
		return placeholder.ReplaceAllStringFunc(s, func(m string) string {
			if m[1] == 'N' {
				return strconv.Itoa(n)
			}
			k := int(m[1] - '0')
			if k > len(fields) {
				bad = fmt.Errorf("template %q uses %s; the token line has %d fields", tmpl, m, len(fields))
				return ""
			}
			return fields[k-1]
		})
	}
	f := strings.Split(tmpl, "\t")
	if len(f) < 3 {
		return request{}, fmt.Errorf("template %q: want method, path, headers…, body", tmpl)
	}
	r := request{method: fill(f[0]), path: fill(f[1]), body: fill(f[len(f)-1])}
	for _, h := range f[2 : len(f)-1] {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return request{}, fmt.Errorf("template %q: header %q has no colon", tmpl, h)
		}
		r.headers = append(r.headers, [2]string{name, fill(strings.TrimLeft(value, " "))})
	}
	return r, bad
}

// ask sends r and reads the answer: Verdict's decision (200 for allow and
// deny on /v1/decide; 200, 401 or 403 on /v1/check) or OPA's result.
func ask(client *http.Client, base, server string, r request) (bool, []string, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, base+r.path, body)
	if err != nil {
		return false, nil, err
	}
	for _, h := range r.headers {
		req.Header.Add(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, nil, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, nil, err
	}
	var d struct {
		Allow   *bool    `json:"allow"`
		Reasons []string `json:"reasons"`
		Result  *struct {
			Allow   *bool    `json:"allow"`
			Reasons []string `json:"reasons"`
		} `json:"result"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return false, nil, fmt.Errorf("status %d, body %.200q: %v", resp.StatusCode, raw, err)
	}
	if server == "opa" {
		if resp.StatusCode != http.StatusOK || d.Result == nil || d.Result.Allow == nil {
			return false, nil, fmt.Errorf("status %d, body %.300q", resp.StatusCode, raw)
		}
		return *d.Result.Allow, d.Result.Reasons, nil
	}
	if d.Allow == nil {
		return false, nil, fmt.Errorf("status %d, body %.300q", resp.StatusCode, raw)
	}
	wantStatus := []int{http.StatusOK}
	if r.path == "/v1/check" && !*d.Allow {
		wantStatus = []int{http.StatusUnauthorized, http.StatusForbidden}
	}
	if !slices.Contains(wantStatus, resp.StatusCode) {
		return false, nil, fmt.Errorf("status %d for allow %v, body %.300q", resp.StatusCode, *d.Allow, raw)
	}
	return *d.Allow, d.Reasons, nil
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 16<<20)
	for sc.Scan() {
		if sc.Text() != "" {
			out = append(out, sc.Text())
		}
	}
	return out, sc.Err()
}

func readConf(path string) (map[string]string, error) {
	lines, err := readLines(path)
	if err != nil {
		return nil, err
	}
	conf := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			conf[k] = v
		}
	}
	return conf, nil
}

// luaScript is the wrk script. Arguments (after --): template file, token
// pool file, number of wrk threads, first request number (@N@). See the
// package documentation for the templates. done() prints one RESULT line
// with req/s, p50 and p99 latency, errors, and whether any thread used a
// token line twice (wrapped=1), which matters for the new-token pools.
const luaScript = `-- generated by test/load/gen; see test/load/run.sh
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local function split(s, sep)
  local out, start = {}, 1
  while true do
    local i = string.find(s, sep, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

-- compile splits a template field into literal strings and placeholders:
-- 0 for @N@, k for @k@ (field k of the token line).
local function compile(s)
  local parts, pos = {}, 1
  while true do
    local a, b, key = string.find(s, "@([1-9N])@", pos)
    if not a then
      if pos <= #s then parts[#parts + 1] = string.sub(s, pos) end
      return parts
    end
    if a > pos then parts[#parts + 1] = string.sub(s, pos, a - 1) end
    parts[#parts + 1] = (key == "N") and 0 or tonumber(key)
    pos = b + 1
  end
end

local function expand(parts, fields, n)
  local buf = {}
  for i = 1, #parts do
    local p = parts[i]
    if p == 0 then
      buf[i] = string.format("%d", n)
    elseif type(p) == "number" then
      buf[i] = fields[p] or error("template uses field " .. p .. " the token line does not have")
    else
      buf[i] = p
    end
  end
  return table.concat(buf)
end

function init(args)
  local tfile, kfile = args[1], args[2]
  nthreads = tonumber(args[3] or "1")
  first = tonumber(args[4] or "0")
  templates = {}
  for line in io.lines(tfile) do
    if line ~= "" then
      local f = split(line, "\t")
      local t = { method = compile(f[1]), path = compile(f[2]), body = compile(f[#f]), headers = {} }
      for i = 3, #f - 1 do
        local c = string.find(f[i], ":", 1, true)
        local value = (string.gsub(string.sub(f[i], c + 1), "^%s+", ""))
        t.headers[#t.headers + 1] = { string.sub(f[i], 1, c - 1), compile(value) }
      end
      templates[#templates + 1] = t
    end
  end
  tokens = {}
  local i = 0
  for line in io.lines(kfile) do
    if line ~= "" then
      if i % nthreads == id then tokens[#tokens + 1] = split(line, "\t") end
      i = i + 1
    end
  end
  ntok = #tokens
  ntmpl = #templates
  sent = 0
end

function request()
  local r = sent
  sent = sent + 1
  local t = templates[r % ntmpl + 1]
  local f = tokens[r % ntok + 1]
  local n = first + r * nthreads + id
  local hdrs = {}
  for _, h in ipairs(t.headers) do hdrs[h[1]] = expand(h[2], f, n) end
  local body = expand(t.body, f, n)
  if body == "" then body = nil end
  return wrk.format(expand(t.method, f, n), expand(t.path, f, n), hdrs, body)
end

function done(summary, latency, requests)
  local wrapped = 0
  local pool = 0
  for _, t in ipairs(threads) do
    local n = t:get("ntok")
    pool = pool + n
    if t:get("sent") > n then wrapped = 1 end
  end
  local secs = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.1f p50_ms=%.3f p99_ms=%.3f requests=%d non2xx=%d sockerr=%d pool=%d wrapped=%d\n",
    summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.status, e.connect + e.read + e.write + e.timeout, pool, wrapped))
end
`
