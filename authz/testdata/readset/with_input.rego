package authz

allow if {
	public with input as {"action": {"name": "catalog:read"}}
}

public if input.action.name == "catalog:read"
