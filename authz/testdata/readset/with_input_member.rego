package authz

allow if {
	public with input.action.name as "catalog:read"
}

public if input.action.name == "catalog:read"
