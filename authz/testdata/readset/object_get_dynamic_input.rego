package authz

allow if object.get(input, split(input.action.name, ":"), false) == true
