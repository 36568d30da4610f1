# An example policy for the HTTP load comparison (test/load/run.sh, workload
# "cert"): a request goes ahead only when BOTH the end user's roles grant the
# action AND the calling service is on that action's allowlist.
#
# The calling service is the client certificate its proxy forwards in the
# /v1/decide body ("caller": {"certificate": "<PEM>"}). Verdict believes it
# only from callers.trusted_proxies and only when it chains to
# callers.trust_bundle_file for client authentication; it then names it in
# input.caller.id (the SPIFFE ID, else the first DNS name, else the CN).
#
#   "roles":              {"viewer": ["orders:read"], ...}
#   "service_identities": {"spiffe://load.test/ns/shop/sa/web": "web", ...}
#   "caller_services":    {"orders:read": ["web", "payments"], ...}
#
# test/load/opabaseline/caller.rego.tmpl is the same policy written for OPA.
package authz

default allow := false

allow := outcome.allow

reasons := {outcome.reason}

default headers := {}

headers := {
	"x-verdict-action": action,
	"x-verdict-subject": object.get(input.subject, "id", ""),
	"x-verdict-caller": input.caller.id,
	"x-verdict-service": caller_service,
} if allow

action := input.action.name

# caller_service is the service the verified caller is.
caller_service := data.service_identities[input.caller.id] if input.caller.authenticated == true

# granting_role is the first of the subject's roles that grants the action.
granting_role := [role |
	some role in input.subject.claims.roles
	action in data.roles[role]
][0]

# outcome is the decision and its reason: the first branch that applies.
outcome := {"allow": false, "reason": "no action"} if {
	not action
} else := {"allow": false, "reason": "the caller is not authenticated"} if {
	not input.caller.authenticated
} else := {"allow": false, "reason": sprintf("caller %s is not a known service", [input.caller.id])} if {
	not caller_service
} else := {"allow": false, "reason": sprintf("service %s may not call %s", [caller_service, action])} if {
	not caller_service in data.caller_services[action]
} else := {"allow": false, "reason": sprintf("anonymous access to %s is not allowed", [action])} if {
	not input.subject.authenticated
} else := {"allow": false, "reason": sprintf("no role grants %s", [action])} if {
	not granting_role
} else := {"allow": true, "reason": sprintf("role %s grants %s to service %s", [granting_role, action, caller_service])}
