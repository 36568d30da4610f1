package authz_test

import data.authz

# The policy contract: allow is exactly true or false, reasons is always a
# non-empty set of strings, headers is an object of strings.

test_allow_has_reason_and_headers if {
	authz.allow with input as named(alice_viewer, no_caller, "orders:read")
	authz.reasons == {"role viewer grants orders:read"} with input as named(alice_viewer, no_caller, "orders:read")
	authz.headers == {
		"x-verdict-action": "orders:read",
		"x-verdict-subject": "alice",
		"x-verdict-roles": "viewer",
		"x-verdict-caller": "",
	} with input as named(alice_viewer, no_caller, "orders:read")
}

test_deny_is_false_not_undefined if {
	authz.allow == false with input as named(anonymous, no_caller, "orders:read")
}

test_headers_empty_on_deny if {
	authz.headers == {} with input as named(alice_viewer, no_caller, "orders:delete")
}

test_headers_roles_comma_joined_in_claim_order if {
	authz.headers["x-verdict-roles"] == "viewer,admin" with input as named(user("carol", ["viewer", "admin"]), no_caller, "orders:read")
}

test_headers_anonymous_public_are_empty if {
	authz.headers == {
		"x-verdict-action": "health:read",
		"x-verdict-subject": "",
		"x-verdict-roles": "",
		"x-verdict-caller": "",
	} with input as named(anonymous, no_caller, "health:read")
}

test_headers_name_the_service_caller if {
	authz.headers == {
		"x-verdict-action": "inventory:reserve",
		"x-verdict-subject": "alice",
		"x-verdict-roles": "viewer",
		"x-verdict-caller": "payments",
	} with input as named(alice_viewer, service("payments"), "inventory:reserve")
}

test_public_anonymous if {
	authz.allow with input as named(anonymous, no_caller, "health:read")
	authz.reasons == {"anonymous access to health:read is public"} with input as named(anonymous, no_caller, "health:read")
}

test_public_authenticated_is_public_first if {
	authz.allow with input as named(alice_viewer, no_caller, "catalog:read")
	authz.reasons == {"catalog:read is public"} with input as named(alice_viewer, no_caller, "catalog:read")
}

test_public_without_roles if {
	authz.allow with input as named(user("dave", []), no_caller, "catalog:read")
	authz.reasons == {"catalog:read is public"} with input as named(user("dave", []), no_caller, "catalog:read")
}

test_anonymous_denied if {
	not authz.allow with input as named(anonymous, no_caller, "orders:read")
	authz.reasons == {"anonymous access to orders:read is not allowed"} with input as named(anonymous, no_caller, "orders:read")
}

test_unknown_action_denied if {
	not authz.allow with input as named(root_admin, no_caller, "billing:read")
	authz.reasons == {"no role grants billing:read"} with input as named(root_admin, no_caller, "billing:read")
}

test_no_action_denied if {
	req := json.patch(named(root_admin, no_caller, "x"), [{"op": "replace", "path": "/action", "value": {}}])
	not authz.allow with input as req
	authz.reasons == {"no action: the request has no action name, and none can be derived from its method and path"} with input as req
}

test_empty_input_denied if {
	not authz.allow with input as {}
	count(authz.reasons) > 0 with input as {}
}

# Every denial says why.
denials := [
	named(anonymous, no_caller, "orders:read"),
	named(alice_viewer, no_caller, "orders:write"),
	named(user("eve", []), no_caller, "orders:read"),
	named(root_admin, no_caller, "inventory:reserve"),
	named(anonymous, service("orders"), "inventory:reserve"),
	forwarded(alice_viewer, "TRACE", "/orders"),
	forwarded(alice_viewer, "GET", "/"),
	{},
]

test_every_denial_has_a_reason if {
	every req in denials {
		not authz.allow with input as req
		reasons := authz.reasons with input as req
		count(reasons) > 0
		every reason in reasons {
			is_string(reason)
		}
	}
}

test_reasons_is_a_set_of_strings if {
	is_set(authz.reasons) with input as named(alice_viewer, no_caller, "orders:read")
	is_set(authz.reasons) with input as named(anonymous, no_caller, "orders:read")
}
