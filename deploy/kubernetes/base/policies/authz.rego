# An example policy set for the Kubernetes manifests: public actions and
# roles from the token's roles claim, named in data.json. Replace both files
# with your own (start from the default set in policies/ at the repository's
# root). A ConfigMap holds no folders: every .rego file and one data.json sit
# side by side, which suits Rego (a module's package is in its text); a
# policy set that needs data at several paths, or more than a ConfigMap's
# 1 MiB, is published as a bundle instead (policy.bundle_url).
package authz

default allow := false

allow if input.action.name in data.public_actions

allow if {
	input.subject.authenticated == true
	some role in input.subject.claims.roles
	input.action.name in data.roles[role]
}

reasons contains sprintf("%s is public", [input.action.name]) if {
	input.action.name in data.public_actions
}

reasons contains sprintf("role %s grants %s", [role, input.action.name]) if {
	input.subject.authenticated == true
	some role in input.subject.claims.roles
	input.action.name in data.roles[role]
}

reasons contains "no role grants the action" if not allow

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
	"x-verdict-action": input.action.name,
	"x-verdict-subject": object.get(input.subject, "id", ""),
	"x-verdict-roles": concat(",", [r | some r in object.get(input.subject, ["claims", "roles"], []); is_string(r)]),
} if allow
