package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// decideBody is the /v1/decide request body. Unknown fields, at the top
// level and inside caller, action and context, are refused; resource and
// context.attributes are free-form objects.
type decideBody struct {
	Token string
	// Caller is nil when the body has no caller member (or null): the
	// connection's mTLS peer is then the caller. One with neither a token
	// nor a certificate ("caller": {}) names no caller: anonymous.
	Caller   *callerBody
	Action   authz.Action
	Resource map[string]any
	Context  *contextBody
}

type callerBody struct {
	Token       string
	Certificate string
}

type contextBody struct {
	RequestID  string
	RemoteAddr string
	Attributes map[string]any
}

// badBody is a body that is not an acceptable request: an invalid request.
func badBody(format string, args ...any) error {
	return authz.Refusef(authz.ErrInvalidRequest, format, args...)
}

// checkJSONContentType refuses a request whose Content-Type is not
// application/json (parameters allowed; a charset must be UTF-8): the body
// is then not the JSON the client means, or the request was not meant for
// this API. A body with a Content-Encoding (gzip) is refused too: it would
// be read as malformed JSON.
func checkJSONContentType(h http.Header) error {
	if ce := h.Get("Content-Encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		return frontErr(errUnsupportedMediaType, "Content-Encoding %q: send the JSON uncompressed", printable.Cut(ce, 32))
	}
	contentType := h.Get("Content-Type")
	if contentType == "" {
		return frontErr(errUnsupportedMediaType, "Content-Type is missing; want application/json")
	}
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return frontErr(errUnsupportedMediaType, "Content-Type %q; want application/json", printable.Cut(contentType, 64))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return frontErr(errUnsupportedMediaType, "charset %q; want utf-8", printable.Cut(cs, 32))
	}
	return nil
}

// jsonReader decodes one request body in a single pass over its bytes with
// jsontext (the token layer of encoding/json/v2): no reflection, UTF-8
// validated, duplicate member names refused natively (in linear time), and
// nesting bounded. Member names are matched exactly, so {"ACTION": ...} is
// an unknown field rather than a silent alias, and every error names the
// place but never echoes a value.
type jsonReader struct {
	dec      *jsontext.Decoder
	buf      bytes.Buffer
	maxDepth int
}

func newJSONReader() *jsonReader {
	r := &jsonReader{}
	r.dec = jsontext.NewDecoder(&r.buf)
	return r
}

// jsonReaders pools jsonReaders, whose name and state stacks are worth
// reusing.
type jsonReaders struct{ pool sync.Pool }

func (p *jsonReaders) get() *jsonReader {
	if r, ok := p.pool.Get().(*jsonReader); ok {
		return r
	}
	return newJSONReader()
}

func (p *jsonReaders) put(r *jsonReader) {
	r.buf = bytes.Buffer{} // keep no reference to the request in the pool
	r.dec.Reset(&r.buf)
	p.pool.Put(r)
}

// decodeBody reads data, a whole request body, as exactly one JSON object
// nesting no deeper than maxDepth ({} at the top is 1), calling member with
// each member's name and the decoder at its value. The decoder reads
// straight from a bytes.Buffer's bytes, without a copy. Errors are refusals
// of category authz.ErrInvalidRequest.
func (r *jsonReader) decodeBody(data []byte, maxDepth int, member func(name string) error) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return badBody("empty body: want a JSON object")
	}
	r.buf = *bytes.NewBuffer(data)
	r.dec.Reset(&r.buf)
	r.maxDepth = maxDepth
	if err := r.object("", member); err != nil {
		return err
	}
	if _, err := r.dec.ReadToken(); err != io.EOF {
		return badBody("unexpected data after the JSON object")
	}
	return nil
}

// decodeDecide strictly decodes a /v1/decide body into out: valid UTF-8,
// nesting no deeper than maxDepth ({} at the top is 1), exactly one JSON
// object, no unknown fields, no member name repeated in any object, every
// field of its type. Errors are refusals of category
// authz.ErrInvalidRequest.
func (r *jsonReader) decodeDecide(data []byte, maxDepth int, out *decideBody) error {
	if err := r.decodeBody(data, maxDepth, func(name string) error { return r.decideMember(name, out) }); err != nil {
		return err
	}
	if out.Caller != nil && out.Caller.Token != "" && out.Caller.Certificate != "" {
		return badBody("caller: give a token or a certificate, not both")
	}
	return nil
}

func (r *jsonReader) decideMember(name string, out *decideBody) error {
	var err error
	switch name {
	case "token":
		out.Token, err = r.str(name)
	case "caller":
		if r.null() {
			return nil
		}
		out.Caller = &callerBody{}
		return r.object(name, func(field string) error {
			switch field {
			case "token":
				out.Caller.Token, err = r.str("caller.token")
			case "certificate":
				out.Caller.Certificate, err = r.str("caller.certificate")
			default:
				return unknownField("caller." + field)
			}
			return err
		})
	case "action":
		return r.action(&out.Action)
	case "resource":
		out.Resource, err = r.freeForm(name)
	case "context":
		if r.null() {
			return nil
		}
		out.Context = &contextBody{}
		return r.object(name, func(field string) error {
			switch field {
			case "request_id":
				out.Context.RequestID, err = r.str("context.request_id")
			case "remote_addr":
				out.Context.RemoteAddr, err = r.str("context.remote_addr")
			case "attributes":
				out.Context.Attributes, err = r.freeForm("context.attributes")
			default:
				return unknownField("context." + field)
			}
			return err
		})
	default:
		return unknownField(name)
	}
	return err
}

// action reads an action given as a string (its name), an object {name,
// method, path}, or null.
func (r *jsonReader) action(a *authz.Action) error {
	switch r.dec.PeekKind() {
	case 'n':
		r.null()
		return nil
	case '"':
		var err error
		a.Name, err = r.str("action")
		return err
	case '{':
		var err error
		return r.object("action", func(field string) error {
			switch field {
			case "name":
				a.Name, err = r.str("action.name")
			case "method":
				a.Method, err = r.str("action.method")
			case "path":
				a.Path, err = r.str("action.path")
			default:
				return unknownField("action." + field)
			}
			return err
		})
	}
	if err := r.syntax(); err != nil {
		return err
	}
	return badBody("field \"action\": must be a string or an object {name, method, path}")
}

func unknownField(name string) error {
	return badBody("unknown field %q", printable.Cut(name, 64))
}

// object reads an object (or refuses any other value), calling member for
// each member name with the decoder positioned at the member's value;
// member must consume the value.
func (r *jsonReader) object(field string, member func(name string) error) error {
	if k := r.dec.PeekKind(); k != '{' {
		if err := r.syntax(); err != nil {
			return err
		}
		return wrongType(field, k, "an object")
	}
	if _, err := r.read(); err != nil {
		return err
	}
	for r.dec.PeekKind() != '}' {
		tok, err := r.read()
		if err != nil {
			return err
		}
		if err := member(tok.String()); err != nil {
			return err
		}
	}
	_, err := r.read()
	return err
}

// read reads one token, checking the nesting limit and mapping errors.
func (r *jsonReader) read() (jsontext.Token, error) {
	tok, err := r.dec.ReadToken()
	if err != nil {
		return tok, jsonError(err)
	}
	if r.dec.StackDepth() > r.maxDepth {
		return tok, badBody("JSON nested deeper than %d levels", r.maxDepth)
	}
	return tok, nil
}

// syntax reports the syntax error at the decoder's position, if any: it is
// what PeekKind answers 0 for.
func (r *jsonReader) syntax() error {
	if r.dec.PeekKind() != 0 {
		return nil
	}
	_, err := r.dec.ReadToken()
	if err == nil {
		return badBody("malformed JSON")
	}
	return jsonError(err)
}

// null consumes a null and reports whether there was one.
func (r *jsonReader) null() bool {
	if r.dec.PeekKind() != 'n' {
		return false
	}
	_, _ = r.dec.ReadToken()
	return true
}

// str reads a string (null reads as "").
func (r *jsonReader) str(field string) (string, error) {
	switch k := r.dec.PeekKind(); k {
	case '"':
		tok, err := r.read()
		if err != nil {
			return "", err
		}
		return tok.String(), nil
	case 'n':
		r.null()
		return "", nil
	default:
		if err := r.syntax(); err != nil {
			return "", err
		}
		return "", wrongType(field, k, "a string")
	}
}

// freeForm reads a free-form object (null reads as nil) as Go values:
// numbers as json.Number, exactly as the engine's input conversion wants
// them.
func (r *jsonReader) freeForm(field string) (map[string]any, error) {
	if r.null() {
		return nil, nil
	}
	if k := r.dec.PeekKind(); k != '{' {
		if err := r.syntax(); err != nil {
			return nil, err
		}
		return nil, wrongType(field, k, "an object")
	}
	v, err := r.value()
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// value reads any JSON value.
func (r *jsonReader) value() (any, error) {
	tok, err := r.read()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		m := make(map[string]any)
		for r.dec.PeekKind() != '}' {
			tok, err := r.read()
			if err != nil {
				return nil, err
			}
			name := tok.String() // before the next read voids tok
			v, err := r.value()
			if err != nil {
				return nil, err
			}
			m[name] = v
		}
		if _, err := r.read(); err != nil {
			return nil, err
		}
		return m, nil
	case '[':
		a := []any{}
		for r.dec.PeekKind() != ']' {
			v, err := r.value()
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		if _, err := r.read(); err != nil {
			return nil, err
		}
		return a, nil
	case '"':
		return tok.String(), nil
	case '0':
		return json.Number(tok.String()), nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case 'n':
		return nil, nil
	}
	return nil, badBody("malformed JSON")
}

// jsonError turns jsontext's errors into short messages that say where but
// never echo the input's values.
func jsonError(err error) error {
	var se *jsontext.SyntacticError
	switch {
	case errors.As(err, &se) && errors.Is(se.Err, jsontext.ErrDuplicateName):
		return badBody("duplicate member name at %s", printable.Cut(string(se.JSONPointer), 64))
	case errors.As(err, &se) && se.Err == io.ErrUnexpectedEOF, errors.Is(err, io.ErrUnexpectedEOF), err == io.EOF:
		return badBody("malformed JSON: unexpected end of body")
	case errors.As(err, &se) && strings.Contains(se.Err.Error(), "UTF-8"):
		return badBody("body is not valid UTF-8")
	case errors.As(err, &se):
		return badBody("malformed JSON at byte %d", se.ByteOffset)
	}
	return badBody("malformed JSON")
}

func wrongType(field string, k jsontext.Kind, want string) error {
	got := map[jsontext.Kind]string{'"': "a string", '0': "a number", 't': "a boolean", 'f': "a boolean",
		'n': "null", '{': "an object", '[': "an array"}[k]
	if field == "" {
		return badBody("want a JSON object, got %s", got)
	}
	return badBody("field %q: want %s, got %s", printable.Cut(field, 64), want, got)
}

// jsonNumber is the type free-form numbers decode to.
type jsonNumber = json.Number
