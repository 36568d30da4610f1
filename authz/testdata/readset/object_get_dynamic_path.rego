package authz

# The path into the resource is computed from the action.
allow if object.get(input.resource, split(input.action.name, ":"), false) == true
