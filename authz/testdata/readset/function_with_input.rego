package authz

owner(doc) := doc.resource.owner

allow if owner(input) == input.subject.id
