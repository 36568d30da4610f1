# An example policy set for the Kubernetes manifests: public actions and
# roles from the token's roles claim, named in data.json. Replace both files
# with your own (start from the default set in policies/ at the repository's
# root). A ConfigMap holds no folders: every .rego file and one data.json sit
# side by side, which suits Rego (a module's package is in its text); a
# policy set that needs data at several paths, or more than a ConfigMap's
# 1 MiB, is published as a bundle instead (policy.bundle_url).
package authz

default allow := false

# action is the action's name: the one the caller gives (/v1/decide), else,
# for forward-auth (/v1/check) and ext_authz, which carry a method and a path,
# the path's first segment and the method's verb: GET /orders/42 is
# "orders:read". A request with neither is undefined, and denied.
action := input.action.name if input.action.name != ""

else := concat(":", [input.action.segments[0], verbs[upper(input.action.method)]]) if {
	not contains(input.action.segments[0], ":")
}

verbs := {"GET": "read", "HEAD": "read", "POST": "write", "PUT": "write", "PATCH": "write", "DELETE": "delete"}

allow if action in data.public_actions

allow if {
	input.subject.authenticated == true
	some role in input.subject.claims.roles
	action in data.roles[role]
}

reasons contains sprintf("%s is public", [action]) if {
	action in data.public_actions
}

reasons contains sprintf("role %s grants %s", [role, action]) if {
	input.subject.authenticated == true
	some role in input.subject.claims.roles
	action in data.roles[role]
}

reasons contains "no role grants the action" if {
	not allow
	action
}

reasons contains "the request names no action" if not action

# headers tell the upstream who was allowed to do what: forward-auth
# (/v1/check) answers them for the proxy to copy onto the request, ext_authz
# sets them on it. On allow all three are always present, empty when
# unknown (an anonymous request for a public action), so that a proxy that
# copies them replaces any header of the same name the client sent, rather
# than passing the client's own x-verdict-subject along. The engine sets
# input.subject.id and the claims only for a verified token. ext_authz also
# removes every other x-verdict-* header the client sent. nginx and
# Traefik (authResponseHeaders) copy the headers you name and pass the
# client's others on: name these three, and have upstreams read no other
# x-verdict-* header.
headers := {
	"x-verdict-action": action,
	"x-verdict-subject": object.get(input.subject, "id", ""),
	"x-verdict-roles": concat(",", [r | some r in object.get(input.subject, ["claims", "roles"], []); is_string(r)]),
} if allow
