package authz

allow if json.marshal(input.action) == `{"name":"x"}`
