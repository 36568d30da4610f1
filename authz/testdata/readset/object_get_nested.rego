package authz

# object.get fails on a non-object: the type of input.resource.meta is read.
allow if object.get(input.resource.meta, "owner", "") == input.subject.id
