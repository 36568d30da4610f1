package authz

allow if "admin" in object.get(input.subject, ["claims", "roles"], [])

reasons := [object.get(input.resource, "id", "none")]
