# Package authz allows unless a deny rule matches: blocked users and
# networks from the base document, keyed by numbers and strings alike.
package authz

deny contains "subject is blocked" if data.blocked_users[input.subject.claims.uid]

deny contains "subject is blocked by index" if {
	i := input.subject.claims.index
	data.blocked_list[i] == input.subject.id
}

deny contains sprintf("network %s is blocked", [cidr]) if {
	some cidr in data.blocked_networks
	net.cidr_contains(cidr, input.context.remote_addr)
}

deny contains "too many roles" if count(object.get(input.subject.claims, "roles", [])) > data.max_roles

deny contains msg if {
	some rule in data.custom_denies
	object.get(input.resource, rule.field, null) == rule.value
	msg := rule.message
}

deny contains "not authenticated" if not input.subject.authenticated

allow if count(deny) == 0

reasons := deny if count(deny) > 0

else := {"nothing denies"}

headers := {"x-level": level}

level := "high" if {
	input.subject.claims.level > 10
} else := "mid" if {
	input.subject.claims.level > 5
} else := "low"
