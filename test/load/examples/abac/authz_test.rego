package authz_test

import data.authz

editor := {"authenticated": true, "method": "token", "id": "user-1", "claims": {"sub": "user-1", "tenant": "tenant-1", "roles": ["editor"]}}

req(action, owner, tenant) := request(editor, action, {"type": "order", "id": "42", "owner": owner, "tenant": tenant})

request(subject, action, resource) := {
	"subject": subject,
	"caller": {"authenticated": false, "method": "none"},
	"action": {"name": action},
	"resource": resource,
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "r"},
}

test_read_in_own_tenant if {
	authz.allow with input as req("orders:read", "user-2", "tenant-1")
	authz.reasons == {"role editor grants orders:read in tenant tenant-1"} with input as req("orders:read", "user-2", "tenant-1")
	authz.headers["x-verdict-tenant"] == "tenant-1" with input as req("orders:read", "user-2", "tenant-1")
}

test_write_own_order if {
	authz.allow with input as req("orders:write", "user-1", "tenant-1")
}

test_write_someone_elses_order if {
	not authz.allow with input as req("orders:write", "user-2", "tenant-1")
	authz.reasons == {"only the owner may orders:write"} with input as req("orders:write", "user-2", "tenant-1")
}

test_other_tenant if {
	not authz.allow with input as req("orders:read", "user-1", "tenant-2")
	authz.reasons == {"the subject is not in tenant tenant-2"} with input as req("orders:read", "user-1", "tenant-2")
}

test_no_role if {
	authz.reasons == {"no role grants orders:delete"} with input as req("orders:delete", "user-1", "tenant-1")
}

test_resource_without_tenant if {
	r := request(editor, "orders:read", {"type": "order", "id": "42"})
	not authz.allow with input as r
	authz.reasons == {"the subject is not in tenant (none)"} with input as r
}

test_subject_without_tenant if {
	no_tenant := {"authenticated": true, "method": "token", "id": "user-1", "claims": {"sub": "user-1", "roles": ["editor"]}}
	r := request(no_tenant, "orders:read", {"type": "order", "id": "42", "owner": "user-1", "tenant": "tenant-1"})
	not authz.allow with input as r
}

test_anonymous if {
	r := request({"authenticated": false}, "orders:read", {"type": "order", "id": "42", "owner": "user-1", "tenant": "tenant-1"})
	authz.reasons == {"anonymous access to orders:read is not allowed"} with input as r
}
