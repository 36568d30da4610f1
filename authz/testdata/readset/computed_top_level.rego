package authz

allow if {
	some k
	input[k].id == "x"
}
