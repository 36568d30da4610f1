package authz

allow if json.marshal(input.subject) != ""
