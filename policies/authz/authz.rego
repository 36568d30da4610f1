# Package authz is Verdict's default policy set and its entrypoint.
#
# The engine reads three rules from this package (the policy contract):
#
#   allow    true only when the request may go ahead. Anything else,
#            including undefined, denies.
#   reasons  a set of strings that say why, for an allow and a deny alike.
#   headers  an object of string to string, returned on allow. Forward-auth
#            copies them onto its response so the proxy can pass them upstream.
#
# The decision is the first of these that applies (outcome, below):
#
#   service  actions in data.service_actions may be called only by the
#            services listed there (services.rego). Nothing else applies
#            to them: not public access, not user roles.
#   public   actions in data.public_actions are open to anyone, even an
#            anonymous request.
#   roles    an authenticated subject may do what one of its roles permits
#            in data.roles (rbac.rego).
#
# The action is named in action.rego. Everything else is denied, with a reason.
#
# The rules are written as one else-chain so that a decision evaluates only
# what it needs: the first branch that matches decides, and nothing after it
# runs. Keep that shape when you add rules; it is what keeps a decision in
# the microseconds.
package authz

default allow := false

allow := outcome.allow

reasons := {outcome.reason}

# headers identify who was allowed to do what. On allow every header is
# always present, empty when unknown, so that a proxy that copies them
# overwrites any same-named header the client sent. The engine sets
# input.subject.id and input.caller.id only for a verified identity, so
# reading them directly is safe.
default headers := {}

headers := {
	"x-verdict-action": action,
	"x-verdict-subject": object.get(input.subject, "id", ""),
	"x-verdict-roles": concat(",", [r | some r in object.get(input.subject, ["claims", "roles"], []); is_string(r)]),
	"x-verdict-caller": object.get(input.caller, "id", ""),
} if allow

# outcome is the decision and its reason: the first branch that applies.
outcome := {"allow": false, "reason": "no action: the request has no action name, and none can be derived from its method and path"} if {
	not action
} else := service_outcome if {
	service_only
} else := {"allow": true, "reason": sprintf("%s is public", [action])} if {
	action in data.public_actions
	authenticated
} else := {"allow": true, "reason": sprintf("anonymous access to %s is public", [action])} if {
	action in data.public_actions
} else := role_outcome if {
	role_outcome
} else := {"allow": false, "reason": sprintf("anonymous access to %s is not allowed", [action])} if {
	not authenticated
} else := {"allow": false, "reason": sprintf("no role grants %s", [action])}

# authenticated holds when the subject's bearer token was verified.
authenticated if input.subject.authenticated == true
