package authz

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// acceptedPaths are request paths normalizePath accepts, with what policies
// see. The fuzz target is seeded with them.
var acceptedPaths = []struct {
	name     string
	in       string
	want     string
	segments []string
}{
	{name: "root", in: "/", want: "/", segments: []string{}},
	{name: "empty", in: "", want: "/", segments: []string{}},
	{name: "query only", in: "?a=/admin", want: "/", segments: []string{}},
	{name: "typical", in: "/orders/42/items/7?expand=x", want: "/orders/42/items/7", segments: []string{"orders", "42", "items", "7"}},
	{name: "no leading slash", in: "orders/42", want: "/orders/42", segments: []string{"orders", "42"}},
	{name: "query holds what the path may not", in: "/a?x=;..;/b#c\\%zz", want: "/a", segments: []string{"a"}},
	{name: "trailing slash", in: "/users/1/", want: "/users/1/", segments: []string{"users", "1", ""}},
	{name: "trailing slash, no leading one", in: "users/", want: "/users/", segments: []string{"users", ""}},
	{name: "escaped, with a trailing slash", in: "/%61/b/", want: "/a/b/", segments: []string{"a", "b", ""}},
	{name: "PHP-like name that is not _method", in: "/a?x.method=DELETE&_methods=1", want: "/a", segments: []string{"a"}},
	{name: "escaped letter", in: "/%61dmin", want: "/admin", segments: []string{"admin"}},
	{name: "escaped upper case", in: "/%41DMIN/%7e", want: "/ADMIN/~", segments: []string{"ADMIN", "~"}},
	{name: "escaped UTF-8", in: "/caf%C3%A9", want: "/café", segments: []string{"café"}},
	{name: "raw UTF-8", in: "/café/注文", want: "/café/注文", segments: []string{"café", "注文"}},
	{name: "fullwidth dot inside a name", in: "/ファイル．txt", want: "/ファイル．txt", segments: []string{"ファイル．txt"}},
	{name: "escaped percent", in: "/100%25", want: "/100%", segments: []string{"100%"}},
	{name: "a colon in a segment", in: "/orders:42/a:b", want: "/orders:42/a:b", segments: []string{"orders:42", "a:b"}},
	{name: "a colon past the first segment of a relative path", in: "orders/a:b", want: "/orders/a:b", segments: []string{"orders", "a:b"}},
	{name: "escaped percent not an escape", in: "/%25zz/%25u12", want: "/%zz/%u12", segments: []string{"%zz", "%u12"}},
	{name: "escaped space", in: "/a%20b", want: "/a b", segments: []string{"a b"}},
	{name: "escaped hash and question mark", in: "/a%23b/c%3Fd", want: "/a#b/c?d", segments: []string{"a#b", "c?d"}},
	{name: "dots inside names", in: "/.well-known/a..b/..c/c./%2ehtaccess", want: "/.well-known/a..b/..c/c./.htaccess", segments: []string{".well-known", "a..b", "..c", "c.", ".htaccess"}},
	{name: "sub-delims", in: "/v1/x:y@z+$&,=!*'()", want: "/v1/x:y@z+$&,=!*'()", segments: []string{"v1", "x:y@z+$&,=!*'()"}},
	{name: "spaces only", in: "/a/ /b", want: "/a/ /b", segments: []string{"a", " ", "b"}},
	{name: "plus is not space", in: "/a+b", want: "/a+b", segments: []string{"a+b"}},
}

// refusedPaths are request paths normalizePath refuses, with a part of the
// reason the error must give.
var refusedPaths = []struct {
	name string
	in   string
	want string
}{
	{name: "servlet dot dot", in: "/public/..;/orders/42", want: "';' path parameters are refused"},
	{name: "servlet parameter", in: "/admin;x", want: "';' path parameters are refused"},
	{name: "servlet dot with parameter", in: "/public/.;x=1/admin", want: "';' path parameters are refused"},
	{name: "encoded dots with parameter", in: "/public/%2e%2e;/admin", want: "';' path parameters are refused"},
	{name: "jsessionid", in: "/admin;jsessionid=1", want: "';' path parameters are refused"},
	{name: "encoded semicolon", in: "/public/..%3B/admin", want: "an encoded ';' is refused"},
	{name: "encoded semicolon lower case", in: "/public/..%3b/admin", want: "an encoded ';' is refused"},
	{name: "all encoded", in: "/public/%2e%2e%3b/admin", want: "an encoded ';' is refused"},
	{name: "encoded dot dot", in: "/a/%2e%2e/admin", want: "an encoded dot segment"},
	{name: "encoded dot dot upper case", in: "/a/%2E%2E/admin", want: "an encoded dot segment"},
	{name: "encoded dot dot mixed", in: "/a/.%2e/admin", want: "an encoded dot segment"},
	{name: "encoded dot dot mixed case", in: "/a/%2E%2e/admin", want: "an encoded dot segment"},
	{name: "encoded dot", in: "/a/%2e/admin", want: "an encoded dot segment"},
	{name: "encoded dot dot later removed", in: "/a/%2e%2e/../b", want: "an encoded dot segment"},
	{name: "double encoded dots", in: "/a/%252e%252e/admin", want: "a double-encoded escape"},
	{name: "double encoded upper case", in: "/a/%252E/admin", want: "a double-encoded escape"},
	{name: "double encoded slash", in: "/a%252Fb", want: "a double-encoded escape"},
	{name: "double encoded IIS", in: "/a/%25u002e%25u002e/b", want: "a double-encoded escape"},
	{name: "overlong dots", in: "/a/%C0%AE%C0%AE/admin", want: "invalid UTF-8"},
	{name: "overlong dot lower case", in: "/a/%c0%ae/admin", want: "invalid UTF-8"},
	{name: "overlong slash", in: "/a%C0%AFb", want: "invalid UTF-8"},
	{name: "encoded surrogate", in: "/a/%ED%A0%80", want: "invalid UTF-8"},
	{name: "truncated sequence", in: "/a/%E2%82", want: "invalid UTF-8"},
	{name: "escape completes raw byte", in: "/a%C3\xa9", want: "not valid UTF-8"},
	{name: "raw overlong", in: "/a/\xc0\xae\xc0\xae/admin", want: "not valid UTF-8"},
	{name: "raw latin-1", in: "/caf\xe9", want: "not valid UTF-8"},
	{name: "backslash dot dot", in: "/public\\..\\admin", want: "'\\' is refused"},
	{name: "backslash only", in: "\\..\\", want: "'\\' is refused"},
	{name: "encoded backslash", in: "/public%5C..%5Cadmin", want: "an encoded '\\' is refused"},
	{name: "encoded backslash lower case", in: "/a%5cb", want: "an encoded '\\' is refused"},
	{name: "encoded NUL", in: "/a%00b", want: "an encoded control character"},
	{name: "encoded newline", in: "/a%0a", want: "an encoded control character"},
	{name: "encoded CRLF", in: "/a%0D%0ASet-Cookie:x", want: "an encoded control character"},
	{name: "encoded DEL", in: "/a%7F", want: "an encoded control character"},
	{name: "encoded unit separator", in: "/a%1f", want: "an encoded control character"},
	{name: "raw NUL", in: "/a\x00b", want: "control characters are refused"},
	{name: "raw tab", in: "/a\tb", want: "control characters are refused"},
	{name: "raw DEL", in: "/a\x7f", want: "control characters are refused"},
	{name: "encoded slash", in: "/a%2Fb", want: "an encoded '/'"},
	{name: "encoded slash lower case", in: "/public%2f..%2fadmin", want: "an encoded '/'"},
	{name: "encoded slash later removed", in: "/a%2Fb/../c", want: "an encoded '/'"},
	{name: "fragment", in: "/catalog#/../admin", want: "a fragment"},
	{name: "method parameter", in: "/orders/42?_method=DELETE", want: "a _method query parameter"},
	{name: "method parameter later", in: "/orders/42?a=1&_METHOD=DELETE", want: "a _method query parameter"},
	{name: "method parameter encoded", in: "/orders/42?%5Fmethod=DELETE", want: "a _method query parameter"},
	{name: "method parameter without value", in: "/orders/42?_method", want: "a _method query parameter"},
	{name: "method parameter as PHP reads a dot", in: "/orders/42?.method=DELETE", want: "a _method query parameter"},
	{name: "method parameter as PHP reads a bracket", in: "/orders/42?[method=DELETE", want: "a _method query parameter"},
	{name: "method parameter after ';'", in: "/orders/42?x=1;_method=DELETE", want: "a _method query parameter"},
	{name: "leading double slash", in: "//public/admin", want: "starting with '//'"},
	{name: "leading triple slash", in: "///public/admin", want: "starting with '//'"},
	{name: "ellipsis", in: "/public/%E2%80%A6/admin", want: "only dots and spaces"},
	{name: "vertical ellipsis", in: "/a/︙/b", want: "only dots and spaces"},
	{name: "dot dot no-break space", in: "/public/..%C2%A0/admin", want: "only dots and spaces"},
	{name: "dot en quad", in: "/public/.%E2%80%80/admin", want: "only dots and spaces"},
	{name: "two dot leader ideographic space", in: "/a/‥\u3000/b", want: "only dots and spaces"},
	{name: "bad escape", in: "/a%zz", want: "bad percent-escape"},
	{name: "truncated escape", in: "/a%2", want: "bad percent-escape"},
	{name: "lone percent", in: "/a%", want: "bad percent-escape"},
	{name: "IIS unicode escape", in: "/a/%u002e%u002e/b", want: "bad percent-escape"},
	{name: "three dots", in: "/a/.../b", want: "only dots and spaces"},
	{name: "dot dot space", in: "/a/.. /b", want: "only dots and spaces"},
	{name: "dot space", in: "/a/. ", want: "only dots and spaces"},
	{name: "encoded dot dot space", in: "/a/%2e%2e%20/b", want: "only dots and spaces"},
	{name: "two dot leader", in: "/a/‥/b", want: "only dots and spaces"},
	{name: "fullwidth dots", in: "/a/．．/b", want: "only dots and spaces"},
	{name: "encoded fullwidth dots", in: "/a/%EF%BC%8E%EF%BC%8E/b", want: "only dots and spaces"},
	{name: "small full stop and dot", in: "/a/﹒./b", want: "only dots and spaces"},
	{name: "vertical two dot leader", in: "/a/︰/b", want: "only dots and spaces"},
	{name: "fullwidth solidus", in: "/public／..／admin", want: "compatibility form of '/'"},
	{name: "encoded fullwidth solidus", in: "/a%EF%BC%8Fb", want: "compatibility form of '/'"},
	{name: "fullwidth reverse solidus", in: "/a＼b", want: "compatibility form of '/'"},
	{name: "care of", in: "/℅", want: "compatibility form of '/'"},
	{name: "separator after dots", in: "/..／", want: "compatibility form of '/'"},
	{name: "absolute URI", in: "http://host/orders/42", want: "an absolute URI"},
	{name: "absolute URI, other scheme", in: "x:/admin", want: "an absolute URI"},
	{name: "fullwidth semicolon", in: "/catalog/x；/orders", want: "compatibility form"},
	{name: "Greek question mark (NFKC ';')", in: "/public/..\u037e/admin", want: "compatibility form"},
	{name: "fullwidth percent", in: "/catalog/％2e％2e/orders", want: "compatibility form"},
	{name: "encoded fullwidth percent", in: "/catalog/%EF%BC%852e", want: "compatibility form"},
	{name: "fullwidth question mark", in: "/admin？x=/public", want: "compatibility form"},
	{name: "fullwidth number sign", in: "/admin＃/public", want: "compatibility form"},
	{name: "raw dot dot", in: "/public/../admin", want: "dot segments"},
	{name: "raw dot and trailing slash", in: "/a/./b/", want: "dot segments"},
	{name: "dot dot above root", in: "/../a", want: "dot segments"},
	{name: "dot dot then empty", in: "/..//a", want: "dot segments"},
	{name: "trailing dot dot", in: "/a/b/..", want: "dot segments"},
	{name: "everything removed", in: "/a/b/../..", want: "dot segments"},
	{name: "dot dot before escapes", in: "/a/b/../../c%2Dd", want: "dot segments"},
	{name: "dot dot after empty segment", in: "/admin//../public", want: "an empty segment"},
	{name: "dot dot after empty and dot", in: "/a//./../b", want: "an empty segment"},
	{name: "trailing dot dot after empty", in: "/a//..", want: "an empty segment"},
	{name: "dot dot after empty below popped", in: "/a//b/../..", want: "an empty segment"},
	{name: "empty segment", in: "/admin//users", want: "an empty segment"},
	{name: "two trailing slashes", in: "/admin//", want: "an empty segment"},
	{name: "empty segment, no leading slash", in: "admin//users/", want: "an empty segment"},
	{name: "dot dot after leading empty", in: "//../a", want: "starting with '//'"},
}

func TestNormalizePathAccepts(t *testing.T) {
	for _, tc := range acceptedPaths {
		t.Run(tc.name, func(t *testing.T) {
			got, segments, err := normalizePath(tc.in)
			if err != nil {
				t.Fatalf("normalizePath(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("normalizePath(%q) path = %q, want %q", tc.in, got, tc.want)
			}
			if segments == nil || !slices.Equal(segments, tc.segments) {
				t.Errorf("normalizePath(%q) segments = %#v, want %#v", tc.in, segments, tc.segments)
			}
		})
	}
}

func TestNormalizePathRefuses(t *testing.T) {
	for _, tc := range refusedPaths {
		t.Run(tc.name, func(t *testing.T) {
			got, segments, err := normalizePath(tc.in)
			if err == nil {
				t.Fatalf("normalizePath(%q) = %q, %q; want an error containing %q", tc.in, got, segments, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("normalizePath(%q) error = %q, want it to contain %q", tc.in, err, tc.want)
			}
			if _, err := actionTerm(Action{Method: "GET", Path: tc.in}); !errors.Is(err, ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("actionTerm(%q) error = %v, want ErrInvalidRequest and %q", tc.in, err, tc.want)
			}
		})
	}
}

// TestNormalizePathErrorNamesNoPath: the error says why, and quotes no
// part of the path: it becomes the deny reason, which a decision-log record
// keeps where the path itself may be masked or hashed.
func TestNormalizePathErrorNamesNoPath(t *testing.T) {
	for _, in := range []string{
		"/users/bob@example.com/..;/x?token=secret",
		"/users/bob@example.com/../x",
		"/users/bob@example.com;jsessionid=1",
		"/users/bob@example.com%2Fx",
		"/users/bob@example.com\\x",
		"/users/bob@example.com\r\n",
		"/users/bob@example.com/x?_method=DELETE",
		"/users/bob@example.com/%2e%2e/x",
		"/users/bob@example.com/\xff",
		"//users/bob@example.com",
		"/" + strings.Repeat("bob@example.com", 3000) + ";",
	} {
		_, _, err := normalizePath(in)
		if err == nil {
			t.Fatalf("normalizePath accepted %q", in)
		}
		if got := err.Error(); !strings.HasPrefix(got, "path: ") || strings.Contains(got, "bob") || strings.Contains(got, "secret") || len(got) > 200 {
			t.Errorf("normalizePath(%q) error = %q, want \"path: \" and why, without the path", in, got)
		}
	}
}

// BenchmarkNormalizePath measures the normaliser on a typical path and on
// paths that take its slower branches. Before the rules of path.go, the
// typical path took about 245 ns and 4 allocations (176 B).
func BenchmarkNormalizePath(b *testing.B) {
	for _, bc := range []struct{ name, path string }{
		{name: "typical", path: "/orders/42/items/7?expand=x"},
		{name: "escaped", path: "/caf%C3%A9/%61dmin/items?x=1"},
		{name: "dotted", path: "/a/./b/../c//d/"},
		{name: "unicode", path: "/注文/ファイル．txt"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := normalizePath(bc.path); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestPathLogPrefix: what a log may hold of a path stops before its query
// and fragment and, in a refused segment, before the first byte that can
// start a parameter, an escape or a look-alike of one.
func TestPathLogPrefix(t *testing.T) {
	for in, want := range map[string]string{
		"/orders/42":                  "/orders/42",
		"/orders/42?token=x":          "/orders/42",
		"/cb#access_token=x":          "/cb",
		"/cb%23access_token=x":        "/cb",
		"/cb%23":                      "/cb",
		"/a/b%2523x":                  "/a/b",
		"/app;jsessionid=x":           "/app",
		"/app%3bjsessionid=x":         "/app",
		"/app\uff1bjsessionid=x":      "/app",
		"/app%EF%BC%9Bjsessionid=x":   "/app",
		"/caf%C3%A9/%61dmin":          "/caf%C3%A9/%61dmin",
		"/a/.../x":                    "/a/.../x",
		"/a/../b":                     "/a/../b",
		"/a/b/":                       "/a/b/",
		"orders/42;x":                 "orders/42",
		"":                            "",
		"/orders/42?q=1;sid=x#frag=y": "/orders/42",
	} {
		if got := PathLogPrefix(in); got != want {
			t.Errorf("PathLogPrefix(%q) = %q, want %q", in, got, want)
		}
	}
}
