package authz_test

import data.authz

viewer := {"authenticated": true, "method": "token", "id": "user-1", "claims": {"sub": "user-1", "roles": ["viewer"]}}

caller(svc) := {
	"authenticated": true,
	"method": "forwarded_cert",
	"id": sprintf("spiffe://load.test/ns/shop/sa/%s", [svc]),
}

req(subject, svc, action) := {
	"subject": subject,
	"caller": caller(svc),
	"action": {"name": action},
	"resource": {},
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "r"},
}

test_allowed_service_and_role if {
	authz.allow with input as req(viewer, "web", "orders:read")
	authz.reasons == {"role viewer grants orders:read to service web"} with input as req(viewer, "web", "orders:read")
	authz.headers["x-verdict-service"] == "payments" with input as req(viewer, "payments", "orders:read")
}

test_service_not_on_the_allowlist if {
	not authz.allow with input as req(viewer, "reports", "orders:read")
	authz.reasons == {"service reports may not call orders:read"} with input as req(viewer, "reports", "orders:read")
}

test_unknown_service if {
	authz.reasons == {"caller spiffe://load.test/ns/shop/sa/unknown is not a known service"} with input as req(viewer, "unknown", "orders:read")
}

test_role_does_not_grant if {
	not authz.allow with input as req(viewer, "web", "orders:write")
	authz.reasons == {"no role grants orders:write"} with input as req(viewer, "web", "orders:write")
}

test_anonymous_caller if {
	r := json.patch(req(viewer, "web", "orders:read"), [{"op": "replace", "path": "/caller", "value": {"authenticated": false, "method": "none"}}])
	not authz.allow with input as r
	authz.reasons == {"the caller is not authenticated"} with input as r
}

test_anonymous_subject if {
	r := req({"authenticated": false}, "web", "orders:read")
	authz.reasons == {"anonymous access to orders:read is not allowed"} with input as r
}
