package httpreq_test

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/verdict-pdp/verdict/internal/httpreq"
)

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		values  []string
		want    string
		wantErr error
	}{
		{nil, "", nil},
		{[]string{"Bearer abc"}, "abc", nil},
		{[]string{"bearer   abc"}, "abc", nil},
		{[]string{"Bearer a", "Bearer b"}, "", httpreq.ErrRepeated},
		{[]string{"Basic YWxp"}, "", httpreq.ErrScheme},
		{[]string{"Bearer"}, "", httpreq.ErrScheme},
		{[]string{"Bearer a b"}, "", httpreq.ErrMalformed},
		{[]string{"Bearer a\tb"}, "", httpreq.ErrMalformed},
	} {
		got, err := httpreq.BearerToken(http.Header{"Authorization": tc.values})
		if got != tc.want || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
			t.Errorf("%q: %q, %v; want %q, %v", tc.values, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestRequestID(t *testing.T) {
	for id, want := range map[string]string{
		"req-1": "req-1", "": "", "a b": "", "ctl\x01": "", strings.Repeat("x", 129): "", strings.Repeat("x", 128): strings.Repeat("x", 128),
	} {
		if got := httpreq.RequestID(http.Header{"X-Request-Id": {id}}); got != want {
			t.Errorf("RequestID(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestTarget: the request target as the client wrote it, query included;
// the path of an absolute-form target; a request made in the process (no
// RequestURI) gives its URL's path and query.
func TestTarget(t *testing.T) {
	for _, tc := range []struct {
		requestURI, url, want string
	}{
		{"/a%2Fb|c?x=1", "http://h/a%2Fb%7Cc?x=1", "/a%2Fb|c?x=1"},
		{"http://h/orders/1?_method=DELETE", "http://h/orders/1?_method=DELETE", "/orders/1?_method=DELETE"},
		{"", "http://h/orders/1?_method=DELETE", "/orders/1?_method=DELETE"},
		// The absolute form's authority ends at '/', '?' or '#': a '/' in
		// the query is not the path (the handler serves "/").
		{"http://h?x=/public", "http://h?x=/public", "/?x=/public"},
		{"http://h?/public", "http://h?/public", "/?/public"},
		{"http://h", "http://h", "/"},
		{"http://h#/public", "http://h", "/public"}, // as net/url reads it (Go's server refuses the host)
		{"https://h:8443/a/b?c=/d", "https://h:8443/a/b?c=/d", "/a/b?c=/d"},
		// As net/url reads a request's target: an authority only right
		// after "scheme:", the query from the first '?'.
		{"x:/admin/://h/public", "http://h/admin/://h/public", "/admin/://h/public"},
		{"http:/public/?_method=DELETE", "http://h/public/?_method=DELETE", "/public/?_method=DELETE"},
		{"HTTP://h/a?b", "http://h/a?b", "/a?b"},
		{"http://u:p@[::1]:8/a", "http://h/a", "/a"},
		{"x:opaque?y=/admin", "http://h/", "/?y=/admin"},
	} {
		r, err := http.NewRequest(http.MethodGet, tc.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		r.RequestURI = tc.requestURI
		if got := httpreq.Target(r); got != tc.want {
			t.Errorf("Target(%q, %q) = %q, want %q", tc.requestURI, tc.url, got, tc.want)
		}
	}
}

// TestClientAddr: every front's form of a client's address is the address
// alone, so that a policy comparing input.context.remote_addr sees one
// form; what is not an address is refused.
func TestClientAddr(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{in: "", want: "", ok: true},
		{in: "10.0.0.7", want: "10.0.0.7", ok: true},
		{in: "10.0.0.7:51234", want: "10.0.0.7", ok: true},
		{in: "[2001:db8::1]:443", want: "2001:db8::1", ok: true},
		{in: "2001:DB8:0::1", want: "2001:db8::1", ok: true},
		{in: "::ffff:10.0.0.7", want: "10.0.0.7", ok: true},
		{in: "[::ffff:10.0.0.7]:80", want: "10.0.0.7", ok: true},
		{in: "fe80::1%eth0", want: "fe80::1", ok: true},
		{in: "[fe80::1%eth0]:80", want: "fe80::1", ok: true},
		{in: "@", ok: false},
		{in: "10.0.0.7:99999", ok: false},
		{in: "10.0.0.7, 192.0.2.1", ok: false},
		{in: "010.0.0.7", ok: false},
		{in: "localhost:80", ok: false},
		{in: "[::1]", ok: false},
	} {
		got, ok := httpreq.ClientAddr(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ClientAddr(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzClientAddr: what ClientAddr accepts it writes in its one form, which
// it accepts again unchanged.
func FuzzClientAddr(f *testing.F) {
	for _, s := range []string{"10.0.0.7:51234", "[::ffff:10.0.0.7]:80", "fe80::1%eth0", "@", "::1", "1.2.3.4:0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := httpreq.ClientAddr(s)
		if !ok || got == "" {
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil || a.Zone() != "" || a.Is4In6() || a.String() != got {
			t.Fatalf("ClientAddr(%q) = %q: not one address in canonical form (%v)", s, got, err)
		}
		if again, ok := httpreq.ClientAddr(got); !ok || again != got {
			t.Fatalf("ClientAddr(%q) = %q, %v; want it unchanged", got, again, ok)
		}
	})
}
