// Command gen prepares one HTTP load comparison of Verdict's /v1/decide
// against OPA's own server (`opa run --server`), for test/load/run.sh.
//
// It generates a signing key at run time (never stored outside -out, which
// run.sh makes a temporary directory and deletes on exit), mints the token
// pools, and writes everything both servers and wrk need:
//
//	<out>/load.lua                  wrk script: cycles a token file round-robin
//	<out>/<alg>/pub.pem             the issuer's public key (Verdict)
//	<out>/<alg>/jwks.json           the same key as a JWKS (OPA's decode_verify)
//	<out>/<alg>/tokens.txt          -n distinct valid tokens, one a line
//	<out>/<alg>/tokens-new.txt      -new more distinct tokens (the "every token new" pool)
//	<out>/<alg>/verdict.yaml        Verdict's configuration (decision_log off)
//	<out>/<alg>/opa/policy.rego     the OPA baseline (test/load/opabaseline): the default policy's RBAC written the OPA way
//	<out>/<alg>/opa/data.json       the default policy's data.json plus the JWKS
//	<out>/<alg>/opa/config.yaml     OPA's configuration (io_jwt cache on)
//
// Every token is iss/aud/sub/iat/exp/jti plus roles ["viewer"]: with action
// orders:read both servers answer allow. The private key lives only in this
// process's memory.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/verdict-pdp/verdict/policies"
	"github.com/verdict-pdp/verdict/test/load/opabaseline"
)

const (
	issuer   = "https://issuer.load.test"
	audience = "verdict-load"
)

func main() {
	out := flag.String("out", "", "output directory (required)")
	alg := flag.String("alg", "RS256", "signing algorithm: RS256 or ES256")
	n := flag.Int("n", 1000, "size of the cycled token pool")
	nNew := flag.Int("new", 0, "size of the every-token-new pool")
	ttl := flag.Duration("ttl", 3*time.Hour, "token lifetime")
	flag.Parse()
	if *out == "" {
		fail(fmt.Errorf("-out is required"))
	}
	if err := run(*out, *alg, *n, *nNew, *ttl); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

func run(out, alg string, n, nNew int, ttl time.Duration) error {
	dir := filepath.Join(out, strings.ToLower(alg))
	if err := os.MkdirAll(filepath.Join(dir, "opa"), 0o700); err != nil {
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
	files := map[string][]byte{
		"pub.pem":   pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		"jwks.json": s.jwks(),
		"verdict.yaml": fmt.Appendf(nil, `# Verdict configuration for the HTTP load comparison (generated).
decision_log: "off"
tokens:
  issuers:
    - issuer: %q
      audiences: [%q]
      algorithms: [%s]
      public_key_file: pub.pem
`, issuer, audience, alg),
		"opa/config.yaml": []byte(opaConfig),
	}
	// The action is a string in the HTTP input, as /v1/decide takes it.
	policy, err := opabaseline.Policy(opabaseline.Params{Constraint: "cert", Issuer: issuer, Audience: audience, Action: "input.action"})
	if err != nil {
		return err
	}
	files["opa/policy.rego"] = []byte(policy)
	if files["opa/data.json"], err = opaData(s.jwks()); err != nil {
		return err
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	now := time.Now()
	if err := mintFile(filepath.Join(dir, "tokens.txt"), s, "pool", n, now, ttl); err != nil {
		return err
	}
	if nNew > 0 {
		if err := mintFile(filepath.Join(dir, "tokens-new.txt"), s, "new", nNew, now, ttl); err != nil {
			return err
		}
	}
	return nil
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

func (s *signer) mint(sub, jti string, now time.Time, ttl time.Duration) (string, error) {
	claims, err := json.Marshal(map[string]any{
		"iss":   issuer,
		"aud":   audience,
		"sub":   sub,
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"jti":   jti,
		"roles": []string{"viewer"},
	})
	if err != nil {
		return "", err
	}
	signing := s.header + "." + b64(claims)
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

// mintFile mints count tokens on all cores and writes them one a line.
func mintFile(path string, s *signer, prefix string, count int, now time.Time, ttl time.Duration) error {
	toks := make([]string, count)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := runtime.NumCPU()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < count; i += workers {
				t, err := s.mint("user-"+strconv.Itoa(i%5000), prefix+"-"+strconv.Itoa(i), now, ttl)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				toks[i] = t
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return os.WriteFile(path, []byte(strings.Join(toks, "\n")+"\n"), 0o600)
}

// opaData is the default policy set's data.json with the JWKS where the
// baseline policy reads it (opabaseline.Data).
func opaData(jwks []byte) ([]byte, error) {
	raw, err := fs.ReadFile(policies.FS(), "data.json")
	if err != nil {
		return nil, err
	}
	var data map[string]any
	if err := json.Unmarshal(raw, &data); err != nil {
		return nil, err
	}
	return json.MarshalIndent(opabaseline.Data(data, string(jwks)), "", "  ")
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

// luaScript is the wrk script. Arguments (after --): token file, body mode
// ("verdict" or "opa"), number of wrk threads. Thread k of T sends tokens
// k, k+T, k+2T, ... of the file, round-robin; done() prints one RESULT line
// with req/s, p50 and p99 latency, errors, and whether any token was sent
// twice (wrapped=1), which matters for the every-token-new pool.
const luaScript = `-- generated by test/load/gen; see test/load/run.sh
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

function init(args)
  local file, mode, nthreads = args[1], args[2], tonumber(args[3] or "1")
  tokens = {}
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == id then tokens[#tokens + 1] = line end
      i = i + 1
    end
  end
  if mode == "opa" then
    prefix, suffix = '{"input":{"token":"', '","action":"orders:read"}}'
  else
    prefix, suffix = '{"token":"', '","action":"orders:read"}'
  end
  hdrs = { ["Content-Type"] = "application/json" }
  ntok = #tokens
  idx = 0
  sent = 0
end

function request()
  idx = idx + 1
  if idx > #tokens then idx = 1 end
  sent = sent + 1
  return wrk.format("POST", nil, hdrs, prefix .. tokens[idx] .. suffix)
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
