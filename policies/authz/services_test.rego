package authz_test

import data.authz

test_payments_token_may_reserve if {
	authz.allow with input as named(anonymous, service("payments"), "inventory:reserve")
	authz.reasons == {"service payments may call inventory:reserve"} with input as named(anonymous, service("payments"), "inventory:reserve")
}

test_payments_spiffe_id_may_reserve if {
	caller := mtls_service("spiffe://verdict.example/ns/shop/sa/payments")
	authz.allow with input as named(anonymous, caller, "inventory:reserve")
	authz.reasons == {"service payments may call inventory:reserve"} with input as named(anonymous, caller, "inventory:reserve")
}

test_payments_on_behalf_of_a_user if {
	authz.allow with input as named(alice_viewer, service("payments"), "inventory:reserve")
}

test_admin_without_payments_caller_denied if {
	not authz.allow with input as named(root_admin, no_caller, "inventory:reserve")
	authz.reasons == {"only payments may call inventory:reserve, and the caller is not authenticated"} with input as named(root_admin, no_caller, "inventory:reserve")
}

test_roles_never_grant_service_actions if {
	not authz.allow with input as named(user("ops1", ["ops"]), no_caller, "inventory:reserve")
		with data.roles as {"ops": ["inventory:*", "inventory:reserve"]}
	authz.direct_grants == ["ops"] with input as named(user("ops1", ["ops"]), no_caller, "inventory:reserve")
		with data.roles as {"ops": ["inventory:*", "inventory:reserve"]}
}

test_unknown_caller_denied if {
	not authz.allow with input as named(anonymous, service("orders"), "inventory:reserve")
	authz.reasons == {"only payments may call inventory:reserve, and caller orders is not a known service"} with input as named(anonymous, service("orders"), "inventory:reserve")
}

test_known_service_not_in_allowlist_denied if {
	ids := {"payments": "payments", "orders": "orders"}
	not authz.allow with input as named(anonymous, service("orders"), "inventory:reserve")
		with data.service_identities as ids
	authz.reasons == {"only payments may call inventory:reserve, not orders"} with input as named(anonymous, service("orders"), "inventory:reserve")
		with data.service_identities as ids
}

test_unauthenticated_caller_with_matching_id_denied if {
	caller := {"authenticated": false, "id": "payments", "method": "none"}
	not authz.allow with input as named(anonymous, caller, "inventory:reserve")
	authz.reasons == {"only payments may call inventory:reserve, and the caller is not authenticated"} with input as named(anonymous, caller, "inventory:reserve")
}

test_caller_id_must_match_exactly if {
	not authz.allow with input as named(anonymous, service("Payments"), "inventory:reserve")
	not authz.allow with input as named(anonymous, service("spiffe://verdict.example/ns/shop/sa/payments/x"), "inventory:reserve")
	not authz.allow with input as named(anonymous, mtls_service("spiffe://evil.example/ns/shop/sa/payments"), "inventory:reserve")
}

test_service_only_beats_public if {
	not authz.allow with input as named(anonymous, no_caller, "health:read")
		with data.service_actions as {"health:read": ["monitor"]}
	authz.allow with input as named(anonymous, service("monitor"), "health:read")
		with data.service_actions as {"health:read": ["monitor"]}
		with data.service_identities as {"monitor": "monitor"}
}

test_several_services_listed if {
	actions := {"inventory:reserve": ["payments", "orders"]}
	ids := {"payments": "payments", "orders": "orders"}
	authz.allow with input as named(anonymous, service("orders"), "inventory:reserve")
		with data.service_actions as actions
		with data.service_identities as ids
	authz.reasons == {"only payments, orders may call inventory:reserve, and the caller is not authenticated"} with input as named(anonymous, no_caller, "inventory:reserve")
		with data.service_actions as actions
}

test_allowlisted_caller_gets_nothing_else if {
	not authz.allow with input as named(anonymous, service("payments"), "orders:read")
	authz.reasons == {"anonymous access to orders:read is not allowed"} with input as named(anonymous, service("payments"), "orders:read")
}
