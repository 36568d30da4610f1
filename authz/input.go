package authz

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Interned keys of the input document, built once: the document is built
// directly as OPA values on every decision, with no JSON round trip.
var (
	keySubject       = ast.InternedTerm("subject")
	keyCaller        = ast.InternedTerm("caller")
	keyAction        = ast.InternedTerm("action")
	keyResource      = ast.InternedTerm("resource")
	keyContext       = ast.InternedTerm("context")
	keyAuthenticated = ast.InternedTerm("authenticated")
	keyID            = ast.InternedTerm("id")
	keyIssuer        = ast.InternedTerm("issuer")
	keyClaims        = ast.InternedTerm("claims")
	keyMethod        = ast.InternedTerm("method")
	keySpiffeID      = ast.InternedTerm("spiffe_id")
	keyCertificate   = ast.InternedTerm("certificate")
	keyName          = ast.InternedTerm("name")
	keyPath          = ast.InternedTerm("path")
	keySegments      = ast.InternedTerm("segments")
	keyTime          = ast.InternedTerm("time")
	keyRequestID     = ast.InternedTerm("request_id")
	keyRemoteAddr    = ast.InternedTerm("remote_addr")
	keyAttributes    = ast.InternedTerm("attributes")
	keySubjectDN     = ast.InternedTerm("subject")
	keySerial        = ast.InternedTerm("serial")
	keyDNSNames      = ast.InternedTerm("dns_names")
	keyURIs          = ast.InternedTerm("uris")
	keyNotAfter      = ast.InternedTerm("not_after")
)

// anonymousSubject and anonymousCaller are shared, read-only values.
var (
	anonymousSubject = ast.NewTerm(ast.NewObject(ast.Item(keyAuthenticated, ast.InternedTerm(false))))
	anonymousCaller  = ast.NewTerm(ast.NewObject(
		ast.Item(keyAuthenticated, ast.InternedTerm(false)),
		ast.Item(keyMethod, ast.InternedTerm(CallerNone)),
	))
)

// Caller methods, as input.caller.method names them.
const (
	CallerMTLS          = "mtls"
	CallerForwardedCert = "forwarded_cert"
	CallerToken         = "token"
	CallerNone          = "none"
)

// Action is what the caller wants to do. At least Name, or Method and Path,
// must be set.
type Action struct {
	// Name is the action's name, e.g. "orders:read".
	Name string `json:"name,omitempty"`
	// Method is the HTTP method, e.g. "GET".
	Method string `json:"method,omitempty"`
	// Path is the request path, e.g. "/orders/42". A query string is
	// dropped, and policies see the path decoded and cleaned: "/a/../b" is
	// "/b" and "/%61dmin" is "/admin", as the upstream will route it. An
	// encoded "/" or dot segment, or a "#", makes the request invalid.
	Path string `json:"path,omitempty"`
}

func (a Action) empty() bool { return a.Name == "" && a.Method == "" && a.Path == "" }

// actionTerm builds input.action.
func actionTerm(a Action) (*ast.Term, error) {
	if a.empty() {
		return nil, fmt.Errorf("%w: action: a name, or a method and path, is required", ErrInvalidRequest)
	}
	obj := ast.NewObjectWithCapacity(4)
	if a.Name != "" {
		obj.Insert(keyName, ast.StringTerm(a.Name))
	}
	if a.Method != "" {
		obj.Insert(keyMethod, ast.StringTerm(strings.ToUpper(a.Method)))
	}
	if a.Path != "" {
		cleaned, segments, err := splitPath(a.Path)
		if err != nil {
			return nil, fmt.Errorf("%w: action: %w", ErrInvalidRequest, err)
		}
		obj.Insert(keyPath, ast.StringTerm(cleaned))
		terms := make([]*ast.Term, len(segments))
		for i, s := range segments {
			terms[i] = ast.StringTerm(s)
		}
		obj.Insert(keySegments, ast.ArrayTerm(terms...))
	}
	return ast.NewTerm(obj), nil
}

// splitPath drops a query string, then returns the decoded, cleaned path
// and its segments. Policies therefore see the path the upstream routes:
// dot segments resolved ("/orders/../admin" is "/admin") and escapes decoded
// ("/%61dmin" is "/admin"). What could make the two disagree is refused: an
// encoded "/" or dot segment, a bad escape, or a "#" (never valid in a
// request target).
func splitPath(p string) (string, []string, error) {
	if i := strings.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if strings.IndexByte(p, '#') >= 0 {
		return "", nil, fmt.Errorf("path %q: a fragment is not part of a request path", p)
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	cleaned := path.Clean(p)
	if cleaned == "/" {
		return cleaned, []string{}, nil
	}
	raw := strings.Split(cleaned[1:], "/")
	segments := make([]string, len(raw))
	for i, s := range raw {
		seg, err := url.PathUnescape(s)
		if err != nil {
			return "", nil, fmt.Errorf("path %q: bad escape", p)
		}
		if strings.ContainsRune(seg, '/') || seg == ".." || seg == "." {
			return "", nil, fmt.Errorf("path %q: encoded separator or dot segment", p)
		}
		segments[i] = seg
	}
	return "/" + strings.Join(segments, "/"), segments, nil
}

// freeFormTerm converts a free-form map (resource, attributes, claims).
func freeFormTerm(what string, m map[string]any) (*ast.Term, error) {
	if len(m) == 0 {
		return ast.NewTerm(ast.NewObject()), nil
	}
	v, err := ast.InterfaceToValue(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidRequest, what, err)
	}
	return ast.NewTerm(v), nil
}

// contextTerm builds input.context.
func contextTerm(now time.Time, requestID, remoteAddr string, attrs map[string]any) (*ast.Term, error) {
	obj := ast.NewObjectWithCapacity(4)
	obj.Insert(keyTime, ast.StringTerm(now.UTC().Format(time.RFC3339Nano)))
	obj.Insert(keyRequestID, ast.StringTerm(requestID))
	if remoteAddr != "" {
		obj.Insert(keyRemoteAddr, ast.StringTerm(remoteAddr))
	}
	if len(attrs) > 0 {
		t, err := freeFormTerm("context.attributes", attrs)
		if err != nil {
			return nil, err
		}
		obj.Insert(keyAttributes, t)
	}
	return ast.NewTerm(obj), nil
}

// inputValue assembles the whole document from its parts.
func inputValue(subject, caller, action, resource, context *ast.Term) ast.Value {
	return ast.NewObject(
		ast.Item(keySubject, subject),
		ast.Item(keyCaller, caller),
		ast.Item(keyAction, action),
		ast.Item(keyResource, resource),
		ast.Item(keyContext, context),
	)
}
