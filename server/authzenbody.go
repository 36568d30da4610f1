package server

import (
	"errors"
	"strconv"

	"github.com/verdict-pdp/verdict/authz"
	"github.com/verdict-pdp/verdict/internal/printable"
)

// azBody is an AuthZEN request body: one evaluation at the top level, or,
// for /access/v1/evaluations, the batch's defaults and its items.
//
// Reading follows the 1.0 text (section "JSON Serialization"): members this
// server does not know are ignored, at every level ("receivers MUST ignore
// unknown fields"), but their values are still read and bounded like the
// rest (depth, size, UTF-8, unique member names: the I-JSON profile the
// text recommends). A null reads as an absent member (the text asks
// senders to omit nulls). Known members are strict: a wrong JSON type is a
// 400, never coerced.
type azBody struct {
	azEvaluation // the request itself, or the batch's defaults

	// Evaluations are the batch's items as sent; empty means the body is
	// one evaluation (also on /access/v1/evaluations).
	Evaluations []azEvaluation
	// Semantic is options.evaluations_semantic.
	Semantic azSemantic
}

// azEvaluation is one evaluation as sent, or a batch's defaults; a nil
// member was absent (or null). An item's member replaces the default's
// whole: members are not merged field by field.
type azEvaluation struct {
	Subject  *authz.Subject
	Action   *azAction
	Resource *azEntity
	// Context is the evaluation's context ({} is present and empty).
	Context map[string]any
}

// azAction is an AuthZEN action.
type azAction struct {
	Name       string
	Properties map[string]any
}

// azEntity is an AuthZEN subject or resource as read. input.resource is
// {type, id, properties?}: document builds it once per entity, so that a
// default resource is one map shared by every item that uses it.
type azEntity struct {
	Type, ID   string
	Properties map[string]any
	doc        map[string]any
}

// document returns input.resource for e. The map is shared: read only.
func (e *azEntity) document() map[string]any {
	if e.doc == nil {
		e.doc = make(map[string]any, 3)
		e.doc["type"], e.doc["id"] = e.Type, e.ID
		if e.Properties != nil {
			e.doc["properties"] = e.Properties
		}
	}
	return e.doc
}

// azSemantic is options.evaluations_semantic.
type azSemantic uint8

const (
	executeAll          azSemantic = iota // every item, in order (the default)
	denyOnFirstDeny                       // stop after the first deny or failure
	permitOnFirstPermit                   // stop after the first permit
)

// entityFields names a subject's or resource's members in errors (built
// once, not per item).
type entityFields struct{ typ, id, properties, whole string }

var (
	subjectFields  = entityFields{"subject.type", "subject.id", "subject.properties", "subject"}
	resourceFields = entityFields{"resource.type", "resource.id", "resource.properties", "resource"}
)

// decodeAuthZEN reads an AuthZEN body into out in one pass (see azBody for
// the rules). batch says whether the body is for /access/v1/evaluations:
// only there are "evaluations" and "options" known, and "evaluations" may
// hold at most maxItems items. It does not check that required members are
// present: a batch's defaults may be incomplete when every item completes
// them, so that is checked per evaluation (azBody.evaluation). Errors are
// refusals of category authz.ErrInvalidRequest.
func (r *jsonReader) decodeAuthZEN(data []byte, maxDepth, maxItems int, batch bool, out *azBody) error {
	return r.decodeBody(data, maxDepth, func(name string) error {
		switch {
		case batch && name == "evaluations":
			return r.evaluations(maxItems, &out.Evaluations)
		case batch && name == "options":
			return r.options(&out.Semantic)
		}
		return r.evaluationMember(name, &out.azEvaluation)
	})
}

// evaluationMember reads one member of an evaluation (or of the defaults),
// skipping a member it does not know.
func (r *jsonReader) evaluationMember(name string, e *azEvaluation) error {
	var err error
	switch name {
	case "subject":
		var s *azEntity
		if s, err = r.entity(&subjectFields); s != nil {
			e.Subject = &authz.Subject{Type: s.Type, ID: s.ID, Properties: s.Properties}
		}
	case "action":
		e.Action, err = r.azAction()
	case "resource":
		e.Resource, err = r.entity(&resourceFields)
	case "context":
		e.Context, err = r.freeForm("context")
	default:
		err = r.skip()
	}
	return err
}

// entity reads a subject or resource: {type, id, properties?}, or null.
func (r *jsonReader) entity(f *entityFields) (*azEntity, error) {
	if r.null() {
		return nil, nil
	}
	e := &azEntity{}
	err := r.object(f.whole, func(name string) error {
		var err error
		switch name {
		case "type":
			e.Type, err = r.str(f.typ)
		case "id":
			e.ID, err = r.str(f.id)
		case "properties":
			e.Properties, err = r.freeForm(f.properties)
		default:
			err = r.skip()
		}
		return err
	})
	return e, err
}

// azAction reads an action: {name, properties?}, or null.
func (r *jsonReader) azAction() (*azAction, error) {
	if r.null() {
		return nil, nil
	}
	a := &azAction{}
	err := r.object("action", func(name string) error {
		var err error
		switch name {
		case "name":
			a.Name, err = r.str("action.name")
		case "properties":
			a.Properties, err = r.freeForm("action.properties")
		default:
			err = r.skip()
		}
		return err
	})
	return a, err
}

// evaluations reads the batch's items (null reads as none), refusing more
// than maxItems as soon as one more starts.
func (r *jsonReader) evaluations(maxItems int, out *[]azEvaluation) error {
	if r.null() {
		return nil
	}
	if k := r.dec.PeekKind(); k != '[' {
		if err := r.syntax(); err != nil {
			return err
		}
		return wrongType("evaluations", k, "an array")
	}
	if _, err := r.read(); err != nil {
		return err
	}
	items := make([]azEvaluation, 0, min(maxItems, 16))
	for r.dec.PeekKind() != ']' {
		i := len(items)
		if i == maxItems {
			return badBody("evaluations: more than %d items", maxItems)
		}
		items = append(items, azEvaluation{})
		err := r.object("", func(name string) error {
			return r.evaluationMember(name, &items[i])
		})
		if err != nil {
			return atItem(i, err)
		}
	}
	if _, err := r.read(); err != nil {
		return err
	}
	*out = items
	return nil
}

// options reads the batch's options: evaluations_semantic, other members
// ignored (null reads as no options).
func (r *jsonReader) options(sem *azSemantic) error {
	if r.null() {
		return nil
	}
	return r.object("options", func(name string) error {
		if name != "evaluations_semantic" {
			return r.skip()
		}
		s, err := r.str("options.evaluations_semantic")
		if err != nil {
			return err
		}
		switch s {
		case "", "execute_all":
			*sem = executeAll
		case "deny_on_first_deny":
			*sem = denyOnFirstDeny
		case "permit_on_first_permit":
			*sem = permitOnFirstPermit
		default:
			return badBody("options.evaluations_semantic: %q is not execute_all, deny_on_first_deny or permit_on_first_permit",
				printable.Cut(s, 32))
		}
		return nil
	})
}

// skip reads past one value of any kind, token by token, so that an
// ignored member is held to the same depth limit as the rest of the body
// and costs no allocation for its contents.
func (r *jsonReader) skip() error {
	depth := 0
	for {
		tok, err := r.read()
		if err != nil {
			return err
		}
		switch tok.Kind() {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		}
		if depth == 0 {
			return nil
		}
	}
}

// atItem prefixes a refusal's detail with the item it is about.
func atItem(i int, err error) error {
	var rf *authz.Refusal
	if errors.As(err, &rf) {
		return badBody("evaluations[%d]: %s", i, rf.Detail)
	}
	return err
}

// evaluation returns evaluation i (-1 for the top level alone) with the
// defaults filled in, refusing one that lacks a required member: subject
// and resource need a type and an id, action a name, all non-empty strings
// (the 1.0 text: a missing required attribute is a 400).
func (b *azBody) evaluation(i int) (azEvaluation, error) {
	e := b.azEvaluation
	where := ""
	if i >= 0 {
		it := &b.Evaluations[i]
		if it.Subject != nil {
			e.Subject = it.Subject
		}
		if it.Action != nil {
			e.Action = it.Action
		}
		if it.Resource != nil {
			e.Resource = it.Resource
		}
		if it.Context != nil {
			e.Context = it.Context
		}
		where = "evaluations[" + strconv.Itoa(i) + "]: "
	}
	switch {
	case e.Subject == nil:
		return e, badBody("%ssubject is required", where)
	case e.Subject.Type == "" || e.Subject.ID == "":
		return e, badBody("%ssubject: type and id are required (non-empty strings)", where)
	case e.Action == nil:
		return e, badBody("%saction is required", where)
	case e.Action.Name == "":
		return e, badBody("%saction: name is required (a non-empty string)", where)
	case e.Resource == nil:
		return e, badBody("%sresource is required", where)
	case e.Resource.Type == "" || e.Resource.ID == "":
		return e, badBody("%sresource: type and id are required (non-empty strings)", where)
	}
	return e, nil
}
