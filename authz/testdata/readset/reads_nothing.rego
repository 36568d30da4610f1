package authz

allow := true
