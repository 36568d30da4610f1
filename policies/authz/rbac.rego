package authz

# Role-based access: an authenticated subject may do what one of its roles
# permits. data.roles maps each role to its permissions:
#
#   "roles": {"viewer": ["orders:read", "catalog:read"], "admin": ["orders:*"]}
#
# A permission is an action name, or "<resource>:*" for every action on a
# resource ("orders:*" covers orders:read, orders:write and orders:delete).
# Roles never grant an action reserved for services (services.rego).

# roles is the set of the subject's roles, from the roles claim of its
# verified token (an array of strings). An anonymous subject has none.
roles contains role if {
	authenticated
	some role in input.subject.claims.roles
	is_string(role)
}

# permits holds the permissions that cover the action: the action itself
# and its resource's wildcard.
permits contains action

permits contains concat(":", [action_resource, "*"])

# action_resource is the part of the action name before its first colon.
action_resource := substring(action, 0, i) if {
	i := indexof(action, ":")
	i > 0
}

# grants holds a [role, permission] pair for every role of the subject that
# has a permission covering the action. Only the subject's own roles are
# looked up in data.roles, so the cost does not grow with the number of roles.
grants contains [role, permission] if {
	some role in roles
	some permission in permits
	permission in data.roles[role]
}

role_allowed if {
	not service_only
	count(grants) > 0
}

reasons contains sprintf("role %s grants %s", [role, action]) if {
	role_allowed
	some [role, permission] in grants
	permission == action
}

reasons contains sprintf("role %s grants %s via %s", [role, action, permission]) if {
	role_allowed
	some [role, permission] in grants
	permission != action
}

reasons contains sprintf("no role grants %s", [action]) if {
	authenticated
	not service_only
	not public_allowed
	not role_allowed
}
