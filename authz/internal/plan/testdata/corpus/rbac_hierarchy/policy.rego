# Role-based access control with a role hierarchy: a role inherits the
# permissions of the roles it extends, transitively. Permissions are
# "<resource>:<action>" and may use "*" for any resource or action.
package corpus

default allow := false

user := data.users[input.subject]

# role_graph maps each role to the roles it inherits from.
role_graph[name] := object.get(role, "inherits", []) if some name, role in data.roles

default user_roles := []

user_roles := user.roles

effective_roles := graph.reachable(role_graph, user_roles)

permissions contains perm if {
	some role in effective_roles
	some perm in data.roles[role].permissions
}

required := sprintf("%s:%s", [input.resource.type, input.action])

granted if required in permissions

granted if {
	some perm in permissions
	contains(perm, "*")
	glob.match(perm, [":"], required)
}

allow if {
	count(reasons) == 0
	granted
}

reasons contains "unknown subject" if not user

reasons contains "account disabled" if user.disabled

reasons contains sprintf("missing permission %q", [required]) if {
	user
	not granted
}

decision := {
	"allow": allow,
	"roles": sort([r | some r in effective_roles]),
	"reasons": reasons,
}
