package authz

allow if {
	print(input)
	input.action.name == "x"
}
