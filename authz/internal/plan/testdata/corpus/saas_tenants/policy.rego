# A multi-tenant SaaS application: users are members of tenants with a
# role, roles allow actions, tenants subscribe to plans that enable
# features and cap usage, suspended tenants are read-only, and support
# staff may act in a tenant with an open ticket for it.
package corpus

tenant := data.tenants[input.tenant]

plan := data.plans[tenant.plan]

membership := tenant.members[input.user]

feature := split(input.action, ":")[0]

is_read if endswith(input.action, ":read")

support_access if {
	input.user in data.support_staff
	some ticket in data.tickets
	ticket.tenant == input.tenant
	ticket.status == "open"
	ticket.assignee == input.user
}

role := membership.role if {
	membership
} else := "support" if {
	support_access
}

default role_name := null

role_name := role

role_allows if input.action in data.roles[role].actions

role_allows if {
	some pattern in data.roles[role].actions
	endswith(pattern, ":*")
	startswith(input.action, trim_suffix(pattern, "*"))
}

over_quota contains sprintf("%s limit %d reached", [resource, limit]) if {
	some resource, limit in plan.limits
	input.action == sprintf("%s:create", [resource])
	object.get(input.usage, resource, 0) >= limit
}

violations contains "unknown tenant" if not tenant

violations contains "not a member of the tenant" if {
	tenant
	not role
}

violations contains sprintf("role %s may not %s", [role, input.action]) if {
	role
	not role_allows
}

violations contains sprintf("plan %s does not include %s", [tenant.plan, feature]) if {
	tenant
	not feature in plan.features
}

violations contains "tenant is suspended" if {
	tenant.status == "suspended"
	not is_read
}

violations contains "resource belongs to another tenant" if {
	input.resource.tenant != input.tenant
}

violations contains msg if some msg in over_quota

default allow := false

allow if count(violations) == 0

decision := {"allow": allow, "role": role_name, "reasons": violations}
