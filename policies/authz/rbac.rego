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

# roles is the set of the subject's roles, from the roles claim of its
# verified token (an array of strings). An anonymous subject has none.
roles := {role | some role in input.subject.claims.roles; is_string(role)} if authenticated

else := set()

# permits are the permissions that cover the action: the action itself and,
# when it names a resource, the resource's wildcard.
permits := [action, concat(":", [substring(action, 0, i), "*"])] if {
	i := indexof(action, ":")
	i > 0
} else := [action]

# role_grant is [role, permission] for the first of the subject's roles (in
# the order of the claim) that has a permission covering the action. Only the
# subject's own roles are looked up in data.roles, so the cost does not grow
# with the number of roles defined.
role_grant := grants[0] if {
	authenticated
	grants := [[role, permission] |
		some role in input.subject.claims.roles
		some permission in permits
		permission in data.roles[role]
	]
}

role_reason := sprintf("role %s grants %s", [role_grant[0], action]) if {
	role_grant[1] == action
} else := sprintf("role %s grants %s via %s", [role_grant[0], action, role_grant[1]])
