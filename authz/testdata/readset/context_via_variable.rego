package authz

allow if {
	c := input.context
	c.attributes.tenant == "a"
}
