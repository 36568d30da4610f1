package authz

allow if "orders.write" in split(input.caller.claims.scope, " ")
