# An API gateway's route table: each route has a method (or "*"), a path
# template whose segments are literals, "*" (any one segment), ":name"
# (a parameter) or a trailing "**" (any rest), and the roles it admits.
# A route may also require the caller to own the resource named by one of
# its parameters.
package corpus

segments := split(trim(input.path, "/"), "/")

template(route) := split(trim(route.path, "/"), "/")

segment_matches(pattern, _) if pattern == "*"

segment_matches(pattern, _) if startswith(pattern, ":")

segment_matches(pattern, segment) if pattern == segment

path_matches(parts) if {
	count(parts) == count(segments)
	every i, part in parts {
		segment_matches(part, segments[i])
	}
}

path_matches(parts) if {
	parts[count(parts) - 1] == "**"
	count(segments) >= count(parts) - 1
	every i, part in array.slice(parts, 0, count(parts) - 1) {
		segment_matches(part, segments[i])
	}
}

params(parts) := {trim_prefix(part, ":"): segments[i] |
	some i, part in parts
	startswith(part, ":")
}

routes contains route if {
	some route in data.routes
	route.method in {input.method, "*"}
	path_matches(template(route))
}

owner_ok(route) if not route.owner_param

owner_ok(route) if params(template(route))[route.owner_param] == input.subject.id

owner_ok(route) if "admin" in input.subject.roles

admitted contains route.id if {
	some route in routes
	some role in input.subject.roles
	role in route.roles
	owner_ok(route)
}

admitted contains route.id if {
	some route in routes
	route.public
}

default allow := false

allow if count(admitted) > 0

status := 200 if {
	allow
} else := 404 if {
	count(routes) == 0
} else := 403

decision := {"allow": allow, "status": status, "routes": admitted}
