package authz

# Service-to-service allowlist: some actions may be called only by named
# services, whoever the end user is.
#
#   "service_identities": {"payments": "payments",
#                          "spiffe://verdict.example/ns/shop/sa/payments": "payments"}
#   "service_actions":    {"inventory:reserve": ["payments"]}
#
# service_identities maps an authenticated caller's ID (a service token's
# azp or client_id, or a certificate's SPIFFE ID, DNS name or CN) to the
# service it is. service_actions maps an action to the services that may
# call it. For an action listed there, only this rule decides: user roles
# and public access do not apply, and the subject may be anonymous.

# caller_authenticated holds when the calling service proved its identity.
caller_authenticated if input.caller.authenticated == true

# service_only holds when the action is reserved for services.
service_only if data.service_actions[action]

# caller_service is the service the authenticated caller is.
caller_service := data.service_identities[input.caller.id] if caller_authenticated

# service_outcome decides an action reserved for services.
service_outcome := {"allow": true, "reason": sprintf("service %s may call %s", [caller_service, action])} if {
	caller_service in data.service_actions[action]
} else := {"allow": false, "reason": sprintf("only %s may call %s, and the caller is not authenticated", [allowed_services, action])} if {
	not caller_authenticated
} else := {"allow": false, "reason": sprintf("only %s may call %s, and caller %s is not a known service", [allowed_services, action, input.caller.id])} if {
	not caller_service
} else := {"allow": false, "reason": sprintf("only %s may call %s, not %s", [allowed_services, action, caller_service])}

allowed_services := concat(", ", data.service_actions[action])
