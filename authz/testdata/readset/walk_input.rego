package authz

allow if {
	some path, value
	walk(input, [path, value])
	value == "admin"
}
