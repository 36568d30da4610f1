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
