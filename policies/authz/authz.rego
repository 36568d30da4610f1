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
# A request is allowed by one of three rules:
#
#   service  actions in data.service_actions may be called only by the
#            services listed there (services.rego). Nothing else applies
#            to them: not public access, not user roles.
#   public   actions in data.public_actions are open to anyone, even an
#            anonymous request (this file).
#   roles    an authenticated subject may do what one of its roles permits
#            in data.roles (rbac.rego).
#
# The action is named in action.rego. Everything else is denied, with a reason.
package authz

default allow := false

allow if service_allowed

allow if public_allowed

allow if role_allowed

# authenticated holds when the subject's bearer token was verified.
authenticated if input.subject.authenticated == true

# public_allowed holds for an action listed in data.public_actions, unless
# the action is reserved for services.
public_allowed if {
	not service_only
	action in data.public_actions
}

reasons contains sprintf("anonymous access to %s is public", [action]) if {
	public_allowed
	not authenticated
}

reasons contains sprintf("%s is public", [action]) if {
	public_allowed
	authenticated
}

reasons contains sprintf("anonymous access to %s is not allowed", [action]) if {
	not service_only
	not public_allowed
	not authenticated
}

reasons contains "no action: the request has no action name, and none can be derived from its method and path" if {
	not action
}

# headers identify who was allowed to do what. On allow every header is
# always present, empty when unknown, so that a proxy that copies them
# overwrites any same-named header the client sent.
default headers := {}

headers := {
	"x-verdict-action": action,
	"x-verdict-subject": subject_id,
	"x-verdict-roles": concat(",", sort(roles)),
	"x-verdict-caller": caller_id,
} if allow

subject_id := id if {
	authenticated
	id := input.subject.id
} else := ""

caller_id := id if {
	caller_authenticated
	id := input.caller.id
} else := ""
