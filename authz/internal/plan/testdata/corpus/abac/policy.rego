# Attribute-based access control over documents: the subject's tenant,
# department, clearance and role against the document's tenant, owner,
# department, classification and tags.
package corpus

import rego.v1

levels := {"public": 0, "internal": 1, "confidential": 2, "restricted": 3}

subject := data.users[input.subject]

doc := data.documents[input.resource.id]

doc_level := levels[doc.classification]

same_department if subject.department == doc.department

is_owner if doc.owner == input.subject

default allow := false

allow if {
	subject
	doc
	count(deny) == 0
	permitted[input.action]
}

# Reading needs enough clearance, and for anything above "internal" the
# same department, unless one owns the document.
permitted["read"] if {
	subject.clearance >= doc_level
	doc_level <= levels.internal
}

permitted["read"] if {
	subject.clearance >= doc_level
	same_department
}

permitted["read"] if is_owner

permitted["write"] if is_owner

permitted["write"] if {
	same_department
	"editor" in subject.roles
	doc.classification != "restricted"
}

permitted["delete"] if {
	is_owner
	not "legal-hold" in doc.tags
}

permitted["delete"] if {
	"records-manager" in subject.roles
	same_department
}

deny contains "unknown subject" if not subject

deny contains "unknown document" if not doc

deny contains "cross-tenant access" if subject.tenant != doc.tenant

deny contains "subject is suspended" if subject.status == "suspended"

deny contains sprintf("clearance %d below %s", [subject.clearance, doc.classification]) if {
	input.action == "read"
	subject.clearance < doc_level
}

deny contains "document is under legal hold" if {
	input.action in {"write", "delete"}
	"legal-hold" in doc.tags
	not "records-manager" in subject.roles
}

decision := {"allow": allow, "reasons": deny}
