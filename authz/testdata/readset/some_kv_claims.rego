package authz

allow if {
	some k, v in input.subject.claims
	startswith(k, "role")
	v == "admin"
}
