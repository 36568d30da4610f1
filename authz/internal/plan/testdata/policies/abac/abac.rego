# Package authz decides by attributes: the resource's tenant and owner, the
# subject's groups and clearance, the time of day, and per-action rules.
package authz

default allow := false

allow if {
	count(deny) == 0
	some grant in grants
	grant.level <= clearance
}

reasons contains msg if some msg in deny

reasons contains sprintf("granted by %s", [g.name]) if {
	allow
	some g in grants
}

reasons contains "no grant applies" if {
	count(grants) == 0
}

headers["x-tenant"] := tenant if allow

headers["x-groups"] := concat(",", sort(groups)) if allow

headers["x-clearance"] := format_int(clearance, 10) if allow

tenant := object.get(input.resource, "tenant", "default")

groups contains lower(g) if {
	some g in input.subject.claims.groups
	is_string(g)
}

clearance := c if {
	c := input.subject.claims.clearance
	is_number(c)
	c >= 0
} else := 0

owner if input.resource.owner == input.subject.id

hour := h if {
	ns := time.parse_rfc3339_ns(input.context.time)
	[h, _, _] := time.clock([ns, "UTC"])
}

business_hours if {
	hour >= 8
	hour < 18
}

deny contains "resource belongs to another tenant" if {
	input.resource.tenant
	not input.resource.tenant in tenants_of_subject
}

deny contains sprintf("action %s is not allowed outside business hours", [input.action.name]) if {
	input.action.name in data.after_hours_forbidden
	not business_hours
}

tenants_of_subject contains t if some t in input.subject.claims.tenants

tenants_of_subject contains "default"

grants contains {"name": "owner", "level": 0} if owner

grants contains {"name": sprintf("group %s", [g]), "level": rule.level} if {
	some g in groups
	some rule in data.group_rules[g]
	glob.match(rule.action, [":"], input.action.name)
}

grants contains {"name": "public", "level": 0} if {
	every seg in input.action.segments {
		not startswith(seg, "_")
	}
	regex.match(`^public:[a-z]+$`, input.action.name)
}

# limits is an object built from numbers and arrays.
limits[name] := total if {
	some name, values in data.limits
	total := sum([v | some v in values; is_number(v)])
}

over_limit contains name if {
	some name, total in limits
	n := object.get(input.resource, ["usage", name], 0)
	n > total
}

deny contains sprintf("usage of %s is over the limit", [name]) if some name in over_limit
