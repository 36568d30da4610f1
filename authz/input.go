package authz

import (
	"encoding/json"
	"fmt"
	"strconv"
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
	keyType          = ast.InternedTerm("type")
	keyProperties    = ast.InternedTerm("properties")
)

// anonymousSubject, anonymousCaller and emptyResource are shared,
// read-only values.
var (
	emptyResource    = ast.NewTerm(ast.NewObject())
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
	CallerMesh          = "mesh"
	CallerNone          = "none"
)

// Subject methods, as input.subject.method names them.
const (
	SubjectToken    = "token"
	SubjectAsserted = "asserted"
)

// Action is what the caller wants to do. At least Name, or Method and Path,
// must be set: without a Name, a Method without a Path (or a Path without a
// Method) is refused.
type Action struct {
	// Name is the action's name, e.g. "orders:read".
	Name string `json:"name,omitempty"`
	// Method is the HTTP method as the request holds it, e.g. "GET": an
	// upper-case token, or the request is refused (ErrInvalidRequest).
	// Methods are case-sensitive and not upper-cased: a router matching
	// them to the byte routes "get" apart from "GET".
	Method string `json:"method,omitempty"`
	// Path is the request path (the request target), e.g. "/orders/42".
	// A query string is dropped, and policies see the path decoded, as the
	// upstream will route it: "orders/42" is "/orders/42", "/%61dmin" is
	// "/admin", and raw non-ASCII is accepted when it is valid UTF-8. A
	// trailing slash is kept as a last empty segment ("/users/1/" is
	// segments "users", "1", ""): strict routers route it apart from
	// "/users/1", others do not, so a rule denying a path must deny both.
	//
	// A path that common upstreams would route differently makes the
	// request invalid (ErrInvalidRequest, a 400) rather than being guessed
	// at: dot segments, raw or encoded ("/a/../b", "%2e%2e": proxies
	// forward them unresolved); any ';' (servlet containers strip
	// ";parameters", so "/public/..;/admin" reaches /admin there), literal
	// or as %3B; '\' or %5C (read as '/' by WHATWG parsers and IIS);
	// control characters; bytes or escapes that are not valid UTF-8
	// (overlong %C0%AE); a bad escape; an encoded '/'; a double-encoded
	// escape (%252e); an empty segment other than the last ("/a//b");
	// a segment made only of dots and spaces ("...",
	// ".. "); Unicode compatibility forms of '/', '\', ';', '%', '?' and
	// '#'; a '#'; and an absolute URI ("http://host/x"). The full rules,
	// and why, are on normalizePath in path.go.
	Path string `json:"path,omitempty"`
	// Properties are free-form properties of the action (AuthZEN's
	// action.properties); nil means none.
	Properties map[string]any `json:"properties,omitempty"`
}

// check refuses an action that names nothing a policy could grant (no
// name, and not both a method and a path) and a method that is not an
// upper-case HTTP token.
func (a Action) check() error {
	switch {
	case a.Method != "" && !upperToken(a.Method):
		return Refusef(ErrInvalidRequest, "action: the method is not an upper-case HTTP token "+
			"(methods are case-sensitive: an upstream routes \"get\" apart from \"GET\", and a policy would have judged it as GET)")
	case a.Name != "" || a.Method != "" && a.Path != "":
		return nil
	case a.Method == "" && a.Path == "":
		return Refusef(ErrInvalidRequest, "action: a name, or a method and path, is required")
	default:
		return Refusef(ErrInvalidRequest, "action: a method and a path go together (or give a name)")
	}
}

// upperToken reports whether m is an RFC 9110 token without lower-case
// letters: what every standard method is, and what a router matching
// methods to the byte ("GET /docs/{id}" in Go's ServeMux) takes as written.
// Methods are not upper-cased for the policy: a request with method "get"
// reaches the handler of GET only in an upstream that upper-cases too, and
// another one's method-less route in Go's ServeMux.
func upperToken(m string) bool {
	for i := range len(m) {
		switch c := m[i]; {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return m != ""
}

// actionTerm builds input.action.
func actionTerm(a Action) (*ast.Term, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	obj := ast.NewObjectWithCapacity(4)
	if a.Name != "" {
		obj.Insert(keyName, ast.StringTerm(a.Name))
	}
	if a.Method != "" {
		obj.Insert(keyMethod, ast.StringTerm(a.Method))
	}
	if len(a.Properties) > 0 {
		t, err := freeFormTerm("action.properties", a.Properties)
		if err != nil {
			return nil, err
		}
		obj.Insert(keyProperties, t)
	}
	if a.Path != "" {
		cleaned, segments, err := normalizePath(a.Path)
		if err != nil {
			return nil, &Refusal{Category: ErrInvalidRequest, Detail: "action: " + err.Error(), Cause: err}
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

// assertedSubject builds input.subject for a subject a trusted client named.
func assertedSubject(s *Subject) (*ast.Term, error) {
	if s.Type == "" || s.ID == "" {
		return nil, Refusef(ErrInvalidRequest, "subject: type and id are required")
	}
	obj := ast.NewObjectWithCapacity(5)
	obj.Insert(keyAuthenticated, ast.InternedTerm(true))
	obj.Insert(keyMethod, ast.InternedTerm(SubjectAsserted))
	obj.Insert(keyType, ast.StringTerm(s.Type))
	obj.Insert(keyID, ast.StringTerm(s.ID))
	if len(s.Properties) > 0 {
		t, err := freeFormTerm("subject.properties", s.Properties)
		if err != nil {
			return nil, err
		}
		obj.Insert(keyProperties, t)
	}
	return ast.NewTerm(obj), nil
}

// freeFormTerm converts a free-form map (resource, attributes, claims). A
// value JSON cannot hold (NaN or an infinity, however the Go value holds
// it: any comparison of it panics inside OPA) or that OPA's converter
// panics on (a typed nil pointer) is an invalid request, as a value it
// refuses is.
func freeFormTerm(what string, m map[string]any) (*ast.Term, error) {
	if len(m) == 0 {
		return ast.NewTerm(ast.NewObject()), nil
	}
	v, err := toValue(m)
	if err != nil {
		return nil, &Refusal{Category: ErrInvalidRequest, Detail: what + ": " + err.Error(), Cause: err}
	}
	return ast.NewTerm(v), nil
}

// maxValueDepth bounds the nesting of a Go value the engine converts: a
// map or slice that holds itself would otherwise recurse until the stack
// overflows, which no recover catches and which ends the process.
const maxValueDepth = 1000

// maxDataDepth bounds the nesting of a snapshot's Data, for the same
// reason: a data document that holds itself (built in Go by an embedding
// program; no data file can) would overflow the stack when the snapshot is
// compiled. It is twice the JSON decoder's own bound (10000), so that
// every data file that parses loads, however deep the directory it is in.
const maxDataDepth = 20000

// toValue is ast.InterfaceToValue, with a panic of its (on a typed nil
// pointer) returned as an error, a value nested deeper than maxValueDepth
// (a cyclic map or slice) refused before conversion, and a number JSON
// cannot hold refused (badNumber).
func toValue(x any) (v ast.Value, err error) {
	defer func() {
		if p := recover(); p != nil {
			v, err = nil, fmt.Errorf("cannot convert the value: %v", p)
		}
	}()
	if tooDeep(x, maxValueDepth) {
		return nil, fmt.Errorf("nested deeper than %d levels (a map or slice that holds itself?)", maxValueDepth)
	}
	if v, err = ast.InterfaceToValue(x); err != nil {
		return nil, err
	}
	if bad := badNumber(v); bad != "" {
		return nil, fmt.Errorf("%s is not a JSON number", bad)
	}
	return v, nil
}

// tooDeep reports whether x nests maps and slices of any (the kinds
// ast.InterfaceToValue recurses into itself; it converts any other through
// encoding/json, which refuses a cycle) or AST collections (which it takes
// as they are) more than depth levels deep. It
// stops at the first path that does, so a cycle costs no more than depth
// levels of the walk.
func tooDeep(x any, depth int) bool {
	switch x := x.(type) {
	case map[string]any:
		if depth == 0 {
			return true
		}
		for _, e := range x {
			if tooDeep(e, depth-1) {
				return true
			}
		}
	case []any:
		if depth == 0 {
			return true
		}
		for _, e := range x {
			if tooDeep(e, depth-1) {
				return true
			}
		}
	// An ast.Value is taken as it is, and can hold itself too.
	case ast.Object:
		if depth == 0 {
			return true
		}
		return x.Until(func(k, v *ast.Term) bool { return tooDeep(k.Value, depth-1) || tooDeep(v.Value, depth-1) })
	case *ast.Array:
		if depth == 0 {
			return true
		}
		return x.Until(func(e *ast.Term) bool { return tooDeep(e.Value, depth-1) })
	case ast.Set:
		if depth == 0 {
			return true
		}
		return x.Until(func(e *ast.Term) bool { return tooDeep(e.Value, depth-1) })
	}
	return false
}

// badNumber names the first number in v (keys included) that is not a
// finite JSON number, or returns "".
func badNumber(v ast.Value) string {
	switch x := v.(type) {
	case ast.Number:
		s := string(x)
		if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') || !json.Valid([]byte(s)) || strings.TrimSpace(s) != s {
			return strconv.Quote(s)
		}
		if _, err := strconv.ParseFloat(s, 64); err != nil {
			return strconv.Quote(s)
		}
	case ast.Object:
		var bad string
		x.Until(func(k, e *ast.Term) bool {
			if bad = badNumber(k.Value); bad == "" {
				bad = badNumber(e.Value)
			}
			return bad != ""
		})
		return bad
	case *ast.Array:
		for i := range x.Len() {
			if bad := badNumber(x.Elem(i).Value); bad != "" {
				return bad
			}
		}
	case ast.Set:
		var bad string
		x.Until(func(e *ast.Term) bool {
			bad = badNumber(e.Value)
			return bad != ""
		})
		return bad
	}
	return ""
}

// contextTerm builds input.context; attributes is nil when there are none.
func contextTerm(now time.Time, requestID, remoteAddr string, attributes *ast.Term) *ast.Term {
	obj := ast.NewObjectWithCapacity(4)
	obj.Insert(keyTime, ast.StringTerm(now.UTC().Format(time.RFC3339Nano)))
	obj.Insert(keyRequestID, ast.StringTerm(requestID))
	if remoteAddr != "" {
		obj.Insert(keyRemoteAddr, ast.StringTerm(remoteAddr))
	}
	if attributes != nil {
		obj.Insert(keyAttributes, attributes)
	}
	return ast.NewTerm(obj)
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
