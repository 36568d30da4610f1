package authz

# Role-based access: an authenticated subject may do what one of its roles
# permits. data.roles maps each role to its permissions:
#
#   "roles": {"viewer": ["orders:read", "catalog:read"], "admin": ["orders:*"]}
#
# A permission is an action name, or "<resource>:*" for every action on a
# resource ("orders:*" covers orders:read, orders:write and orders:delete).
# Roles never grant an action reserved for services (services.rego decides
# those first).
#
# Only the subject's own roles are looked up in data.roles, so the cost of a
# decision does not grow with the number of roles defined.

# direct_grants are the subject's roles (in the order of its roles claim)
# that list the action itself.
direct_grants := [role |
	some role in input.subject.claims.roles
	action in data.roles[role]
]

# wildcard_grants are the subject's roles that list the wildcard of the
# action's resource.
wildcard_grants := [role |
	some role in input.subject.claims.roles
	resource_wildcard in data.roles[role]
]

# resource_wildcard is "orders:*" for "orders:read"; undefined for an action
# without a resource part.
resource_wildcard := concat("", [substring(action, 0, i), ":*"]) if {
	i := indexof(action, ":")
	i > 0
}

# role_outcome allows an authenticated subject whose roles grant the action,
# naming the first role that does.
role_outcome := {"allow": true, "reason": sprintf("role %s grants %s", [direct_grants[0], action])} if {
	authenticated
	count(direct_grants) > 0
} else := {"allow": true, "reason": sprintf("role %s grants %s via %s", [wildcard_grants[0], action, resource_wildcard])} if {
	authenticated
	count(wildcard_grants) > 0
}
