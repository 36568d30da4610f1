package fwdcert

import (
	"bytes"
	"errors"
	"net/url"
	"testing"

	"github.com/verdict-pdp/verdict/authz/authztest"
)

func TestParseXFCC(t *testing.T) {
	ca := authztest.NewCA(t, "ca")
	p := ca.Issue(t, authztest.LeafOptions{CommonName: "svc"}).CertPEM
	enc := url.PathEscape(string(p))
	tests := []struct {
		name    string
		value   string
		want    []byte
		wantErr bool
	}{
		{name: "quoted cert", value: `Hash=1;Cert="` + enc + `"`, want: p},
		{name: "unquoted cert", value: `Cert=` + enc + `;Hash=1`, want: p},
		{name: "lowercase key", value: `cert="` + enc + `"`, want: p},
		{name: "quoted subject with separators", value: `Subject="CN=a,O=b;c=\"d\"";Cert="` + enc + `"`, want: p},
		{name: "last element", value: `Cert=AAAA,Hash=2;Cert="` + enc + `"`, want: p},
		{name: "one element with URI and DNS", value: `Cert="` + enc + `";URI=spiffe://a/b;DNS=a;dns=b`, want: p},
		{name: "element injected through a URI value", value: `Cert="` + enc + `";URI=spiffe://a/b,Cert="` + enc + `"`, wantErr: true},
		{name: "element injected through a DNS value", value: `Cert="` + enc + `";DNS=a,Cert=` + enc, wantErr: true},
		{name: "several elements, URI in an earlier one", value: `Cert=AAAA; uri =x,Cert="` + enc + `"`, wantErr: true},
		{name: "URI= inside a quoted value is no pair", value: `Subject="URI=x",Cert="` + enc + `"`, want: p},
		{name: "quote left open by a client's element flips the proxy's", value: `Cert="` + "," +
			`By=spiffe://v/envoy;Hash=abc;Cert="` + enc + `";URI=a",Cert=` + enc + `;Y=";DNS="`, wantErr: true},
		{name: "URI value closing a quote", value: `Hash=abc;Cert="` + enc + `";URI=a",Cert=` + enc + `;Y=""`, wantErr: true},
		{name: "text after a quoted value", value: `Cert="` + enc + `"x`, wantErr: true},
		{name: "quote inside an unquoted value", value: `Hash=a"b;Cert="` + enc + `"`, wantErr: true},
		{name: "key with a quote", value: `"Cert"="` + enc + `"`, wantErr: true},
		{name: "blanks around pairs", value: ` Hash=1 ; Cert="` + enc + `" `, want: p},
		{name: "second Cert injected through a URI value", value: `Cert="` + enc + `";URI=spiffe://a/b;Cert="` + enc + `"`, wantErr: true},
		{name: "as Envoy writes it", value: authztest.XFCC(p), want: p},
		{name: "chain appended", value: `Cert="` + enc + `";Chain="` + url.PathEscape(string(ca.PEM())) + `"`,
			want: append(append(append([]byte{}, p...), '\n'), ca.PEM()...)},
		{name: "no cert", value: `Hash=1;Subject="CN=x"`, wantErr: true},
		{name: "empty last element", value: `Cert="` + enc + `",`, wantErr: true},
		{name: "unterminated quote", value: `Cert="` + enc, wantErr: true},
		{name: "pair without equals", value: `Cert`, wantErr: true},
		{name: "two certs", value: `Cert="` + enc + `";Cert="` + enc + `"`, wantErr: true},
		{name: "not PEM", value: `Cert="hello"`, wantErr: true},
		{name: "bad escape", value: `Cert="-----BEGIN %zz"`, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseXFCC(tc.value)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Errorf("err %v does not wrap ErrMalformed", err)
				}
				return
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
			if _, _, err := ParseChain(got); err != nil {
				t.Errorf("ParseChain: %v", err)
			}
		})
	}
}

func TestParseEscapedPEM(t *testing.T) {
	leaf := authztest.NewCA(t, "ca").Issue(t, authztest.LeafOptions{CommonName: "svc"})
	p := leaf.CertPEM
	for name, v := range map[string]string{
		"form encoded": url.QueryEscape(string(p)), // spaces as '+', '+' as %2B
		"path escaped": url.PathEscape(string(p)),
		"nginx style":  authztest.EscapePEM(p),
	} {
		t.Run(name, func(t *testing.T) {
			got, err := ParseEscapedPEM(v)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err := ParseChain(got)
			if err != nil {
				t.Fatal(err)
			}
			if !c.Equal(leaf.Cert) {
				t.Error("different certificate")
			}
		})
	}
}

func TestParseChainLimits(t *testing.T) {
	ca := authztest.NewCA(t, "ca")
	one := ca.PEM()
	if _, _, err := ParseChain(bytes.Repeat(one, maxChainCerts+1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("too many certificates: %v, want ErrMalformed", err)
	}
	notACert := "-----BEGIN " + "PRIVATE KEY-----\nAAAA\n-----END " + "PRIVATE KEY-----\n" // no real key: a block of the wrong type
	if _, _, err := ParseChain([]byte(notACert)); !errors.Is(err, ErrMalformed) {
		t.Errorf("private key block: %v, want ErrMalformed", err)
	}
	if _, _, err := ParseChain([]byte("no PEM here")); !errors.Is(err, ErrMalformed) {
		t.Errorf("no PEM: %v, want ErrMalformed", err)
	}
	leaf, inter, err := ParseChain(append(ca.Issue(t, authztest.LeafOptions{CommonName: "x"}).CertPEM, one...))
	if err != nil || leaf == nil || len(inter) != 1 {
		t.Errorf("leaf %v, inter %d, err %v", leaf != nil, len(inter), err)
	}
}

// FuzzForwardedCert: the XFCC and escaped-PEM parsers never panic; what
// they accept holds a PEM boundary, and the chain parser never panics on it.
func FuzzForwardedCert(f *testing.F) {
	ca := authztest.NewCA(f, "fuzz ca")
	leaf := ca.Issue(f, authztest.LeafOptions{CommonName: "svc", URIs: []string{"spiffe://verdict.example/ns/a/sa/b"}})
	f.Add(authztest.XFCC(leaf.CertPEM))
	f.Add(authztest.XFCC(leaf.CertPEM) + "," + authztest.XFCC(ca.PEM()))
	f.Add(authztest.EscapePEM(leaf.CertPEM))
	f.Add(`By=x;Hash=y;Subject="a,b;c=\"d\"";URI=;DNS=a;DNS=b`)
	f.Add(`Cert="%zz"`)
	f.Add(`Cert=",By=x;Cert="` + authztest.EscapePEM(leaf.CertPEM) + `";URI=a",Cert=` + authztest.EscapePEM(ca.PEM()) + `;Y=""`)
	f.Add(`Hash=1;Cert="` + authztest.EscapePEM(leaf.CertPEM) + `";URI=spiffe://a/b,Cert="` + authztest.EscapePEM(ca.PEM()) + `"`)
	f.Add(`Cert="-----BEGIN CERTIFICATE-----%0AAAAA%0A-----END CERTIFICATE-----"`)
	f.Add(`"`)
	f.Add(``)
	f.Fuzz(func(t *testing.T, v string) {
		for name, parse := range map[string]func(string) ([]byte, error){"xfcc": ParseXFCC, "escaped": ParseEscapedPEM} {
			out, err := parse(v)
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("%s: error %v does not wrap ErrMalformed", name, err)
				}
				continue
			}
			if !bytes.Contains(out, []byte("-----BEGIN ")) {
				t.Fatalf("%s: accepted %q without a PEM boundary", name, out)
			}
			if leaf, _, err := ParseChain(out); err == nil && leaf == nil {
				t.Fatalf("%s: ParseChain returned no leaf and no error", name)
			}
		}
	})
}
