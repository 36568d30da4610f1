package authz

allow if {
	input.action.method == "GET"
	input.action.segments[0] == "orders"
}

reasons := [sprintf("%s on %s", [input.action.method, input.action.segments[0]])]
