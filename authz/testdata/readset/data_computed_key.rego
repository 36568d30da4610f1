package authz

# The rule consulted depends on the request: every rule under
# data.authz.checks is followed.
allow if checks[input.action.name]

checks["orders:read"] if input.resource.owner == input.subject.id

checks["catalog:read"] if input.caller.authenticated
