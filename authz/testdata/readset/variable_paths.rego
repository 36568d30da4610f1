package authz

allow if {
	s := input.subject
	s.claims.tenant == "acme"
	some role in s.claims.roles
	role == "admin"
}
