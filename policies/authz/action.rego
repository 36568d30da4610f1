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

# path_segments are the non-empty segments of the request path: ["orders",
# "42"] for /orders/42. The PEP sends them; without them the path is split
# here, ignoring any query string.
path_segments := input.action.segments if {
	is_array(input.action.segments)
} else := [s | some s in split(split(input.action.path, "?")[0], "/"); s != ""]

# path_resource is the first segment of the request path: "orders" for
# /orders/42. A segment with a colon names no resource, so that a path such
# as /inventory:reserve cannot pass for another action.
path_resource := path_segments[0] if not contains(path_segments[0], ":")
