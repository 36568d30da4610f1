package authz

# action is the name of the requested action, for example "orders:read".
#
# The PEP names it in input.action.name. A forward-auth request that carries
# no name is named from its method and path instead: the first path segment,
# a colon, and the verb of the method, so GET /orders/42 is "orders:read".
# With neither, action is undefined and the request is denied.
action := input.action.name if input.action.name != ""

else := concat(":", [path_resource, verbs[upper(input.action.method)]])

# verbs maps HTTP methods to the verb of a derived action name. Methods not
# listed here (TRACE, CONNECT, ...) have no verb, so their requests are denied.
verbs := {
	"GET": "read",
	"HEAD": "read",
	"OPTIONS": "read",
	"POST": "write",
	"PUT": "write",
	"PATCH": "write",
	"DELETE": "delete",
}

# path_resource is the first segment of the request path: "orders" for
# /orders/42. The engine splits the path into input.action.segments (the
# path alone, in a hand-written input, names no action). A segment with a
# colon names no resource, so that a path such as /inventory:reserve cannot
# pass for another action. Only the first segment is read, so a decision
# for GET /orders/42 is cached for GET /orders/17 too.
path_resource := input.action.segments[0] if not contains(input.action.segments[0], ":")
