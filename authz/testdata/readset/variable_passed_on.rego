package authz

allow if {
	s := input.subject
	count(s) > 3
}
