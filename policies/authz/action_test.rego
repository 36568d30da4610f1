package authz_test

import data.authz

test_action_name_wins_over_method_and_path if {
	authz.action == "orders:read" with input as {"action": {"name": "orders:read", "method": "DELETE", "path": "/catalog"}}
}

test_empty_action_name_is_derived if {
	authz.action == "orders:write" with input as {"action": {"name": "", "method": "POST", "path": "/orders", "segments": ["orders"]}}
}

verb_cases := {
	"GET": "orders:read",
	"HEAD": "orders:read",
	"OPTIONS": "orders:read",
	"POST": "orders:write",
	"PUT": "orders:write",
	"PATCH": "orders:write",
	"DELETE": "orders:delete",
	"get": "orders:read",
	"delete": "orders:delete",
}

test_action_derived_from_method_and_path if {
	every method, want in verb_cases {
		authz.action == want with input as forwarded(anonymous, method, "/orders/42")
	}
}

test_action_uses_first_segment if {
	authz.action == "catalog:read" with input as forwarded(anonymous, "GET", "/catalog/items/7")
}

test_no_action_from_path_without_segments if {
	not authz.action with input as {"action": {"method": "GET", "path": "/orders/42"}}
	not authz.allow with input as {"subject": alice_viewer, "action": {"method": "GET", "path": "/orders/42"}}
}

test_action_prefers_segments_over_path if {
	authz.action == "orders:read" with input as {"action": {"method": "GET", "path": "/api/orders", "segments": ["orders"]}}
}

test_no_action_for_unknown_method if {
	not authz.action with input as forwarded(anonymous, "TRACE", "/orders/42")
	not authz.action with input as forwarded(anonymous, "CONNECT", "/orders/42")
}

test_no_action_for_root_path if {
	not authz.action with input as forwarded(anonymous, "GET", "/")
	not authz.action with input as {"action": {"method": "GET", "path": "/", "segments": []}}
}

test_no_action_for_segment_with_colon if {
	not authz.action with input as forwarded(anonymous, "POST", "/inventory:reserve")
	not authz.action with input as {"action": {"method": "GET", "path": "/catalog:write/1", "segments": ["catalog:write", "1"]}}
	not authz.allow with input as forwarded(root_admin, "GET", "/orders:delete")
}

test_no_action_without_method if {
	not authz.action with input as {"action": {"path": "/orders/42", "segments": ["orders", "42"]}}
}

# The same rules decide forward-auth requests, once the action is named.

test_forwarded_viewer_reads_order if {
	authz.allow with input as forwarded(alice_viewer, "GET", "/orders/42")
	authz.reasons == {"role viewer grants orders:read"} with input as forwarded(alice_viewer, "GET", "/orders/42")
}

test_forwarded_viewer_cannot_delete_order if {
	not authz.allow with input as forwarded(alice_viewer, "DELETE", "/orders/42")
	authz.reasons == {"no role grants orders:delete"} with input as forwarded(alice_viewer, "DELETE", "/orders/42")
}

test_forwarded_health_is_public if {
	authz.allow with input as forwarded(anonymous, "GET", "/health/live")
	authz.reasons == {"anonymous access to health:read is public"} with input as forwarded(anonymous, "GET", "/health/live")
}

test_forwarded_health_write_is_not_public if {
	not authz.allow with input as forwarded(anonymous, "POST", "/health")
}

test_forwarded_unknown_method_denied_with_reason if {
	not authz.allow with input as forwarded(root_admin, "TRACE", "/orders/42")
	authz.reasons == {"no action: the request has no action name, and none can be derived from its method and path"} with input as forwarded(root_admin, "TRACE", "/orders/42")
}
