package main

import (
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
	"fmt"
	"math/big"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

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
