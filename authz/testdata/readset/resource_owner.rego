package authz

allow if input.resource.owner == input.subject.id
