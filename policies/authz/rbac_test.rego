package authz_test

import data.authz

test_viewer if {
	authz.allow with input as named(alice_viewer, no_caller, "orders:read")
	not authz.allow with input as named(alice_viewer, no_caller, "orders:write")
	not authz.allow with input as named(alice_viewer, no_caller, "orders:delete")
	not authz.allow with input as named(alice_viewer, no_caller, "inventory:read")
}

test_editor if {
	authz.allow with input as named(bob_editor, no_caller, "orders:read")
	authz.allow with input as named(bob_editor, no_caller, "orders:write")
	authz.reasons == {"role editor grants orders:write"} with input as named(bob_editor, no_caller, "orders:write")
	not authz.allow with input as named(bob_editor, no_caller, "orders:delete")
	authz.reasons == {"no role grants orders:delete"} with input as named(bob_editor, no_caller, "orders:delete")
}

test_admin if {
	authz.allow with input as named(root_admin, no_caller, "orders:delete")
	authz.allow with input as named(root_admin, no_caller, "inventory:read")
	authz.reasons == {"role admin grants inventory:read"} with input as named(root_admin, no_caller, "inventory:read")
	not authz.allow with input as named(root_admin, no_caller, "inventory:write")
}

test_wildcard_grants_every_action_on_its_resource if {
	every verb in ["read", "write", "delete", "export"] {
		authz.allow with input as named(root_admin, no_caller, concat(":", ["orders", verb]))
	}
	authz.reasons == {"role admin grants orders:delete via orders:*"} with input as named(root_admin, no_caller, "orders:delete")
}

test_wildcard_stays_on_its_resource if {
	perms := {"ops": ["orders:*"]}
	not authz.allow with input as named(user("ops1", ["ops"]), no_caller, "catalog:write") with data.roles as perms
	not authz.allow with input as named(user("ops1", ["ops"]), no_caller, "ordersx:read") with data.roles as perms
	not authz.allow with input as named(user("ops1", ["ops"]), no_caller, "orders") with data.roles as perms
	authz.allow with input as named(user("ops1", ["ops"]), no_caller, "orders:read") with data.roles as perms
}

test_exact_permission_named_before_wildcard if {
	perms := {"ops": ["orders:*", "orders:read"]}
	authz.reasons == {"role ops grants orders:read"} with input as named(user("ops1", ["ops"]), no_caller, "orders:read")
		with data.roles as perms
}

test_any_role_suffices if {
	authz.allow with input as named(user("carol", ["viewer", "editor"]), no_caller, "orders:write")
	authz.reasons == {"role editor grants orders:write"} with input as named(user("carol", ["viewer", "editor"]), no_caller, "orders:write")
	authz.reasons == {"role viewer grants orders:read"} with input as named(user("carol", ["viewer", "editor"]), no_caller, "orders:read")
}

test_unknown_role_grants_nothing if {
	not authz.allow with input as named(user("mallory", ["superuser"]), no_caller, "orders:read")
	authz.reasons == {"no role grants orders:read"} with input as named(user("mallory", ["superuser"]), no_caller, "orders:read")
}

test_no_roles_claim if {
	subject := {"authenticated": true, "id": "eve", "claims": {"sub": "eve"}}
	not authz.allow with input as named(subject, no_caller, "orders:read")
	authz.reasons == {"no role grants orders:read"} with input as named(subject, no_caller, "orders:read")
}

test_roles_claim_must_be_an_array if {
	not authz.allow with input as named(user("eve", "admin"), no_caller, "orders:read")
	not authz.allow with input as named(user("eve", {"admin": true}), no_caller, "orders:read")
}

test_non_string_roles_ignored if {
	not authz.allow with input as named(user("eve", [1, true, ["admin"]]), no_caller, "orders:read")
	authz.allow with input as named(user("eve", [1, "viewer"]), no_caller, "orders:read")
}

test_roles_of_an_unverified_subject_are_ignored if {
	subject := {"authenticated": false, "claims": {"roles": ["admin"]}}
	not authz.allow with input as named(subject, no_caller, "orders:read")
	authz.reasons == {"anonymous access to orders:read is not allowed"} with input as named(subject, no_caller, "orders:read")
}

test_authenticated_must_be_exactly_true if {
	subject := {"authenticated": "true", "id": "eve", "claims": {"roles": ["admin"]}}
	not authz.allow with input as named(subject, no_caller, "orders:read")
}

test_roles_from_data if {
	not authz.allow with input as named(alice_viewer, no_caller, "orders:read") with data.roles as {}
	authz.allow with input as named(user("x", ["auditor"]), no_caller, "audit:read") with data.roles as {"auditor": ["audit:read"]}
}

test_odd_roles_claims_never_error if {
	every roles in ["admin", 42, null, {"admin": true}, ["viewer", 7, {"x": 1}]] {
		subject := user("odd", roles)
		not authz.allow with input as named(subject, no_caller, "orders:delete")
		count(authz.reasons) == 1 with input as named(subject, no_caller, "orders:delete")
	}
	authz.headers["x-verdict-roles"] == "viewer" with input as named(user("odd", ["viewer", 7]), no_caller, "orders:read")
}
