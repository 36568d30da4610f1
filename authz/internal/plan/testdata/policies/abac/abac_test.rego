package authz_test

import data.authz

req(groups, clearance, action, resource) := {
	"subject": {"authenticated": true, "id": "u1", "claims": {"groups": groups, "clearance": clearance, "tenants": ["acme"]}},
	"caller": {"authenticated": false, "method": "none"},
	"action": {"name": action, "segments": ["x"]},
	"resource": resource,
	"context": {"time": "2026-01-05T10:00:00Z", "request_id": "r"},
}

test_support_reads_tickets if {
	authz.allow with input as req(["Support"], 1, "tickets:read", {"tenant": "acme"})
}

test_other_tenant_denied if {
	not authz.allow with input as req(["Support"], 1, "tickets:read", {"tenant": "evil"})
	authz.reasons["resource belongs to another tenant"] with input as req(["Support"], 1, "tickets:read", {"tenant": "evil"})
}

test_clearance_too_low if {
	not authz.allow with input as req(["finance"], 2, "payments:read", {})
}

test_after_hours if {
	r := json.patch(req(["finance"], 5, "payments:refund", {}), [{"op": "replace", "path": "/context/time", "value": "2026-01-05T22:00:00Z"}])
	not authz.allow with input as r
	authz.allow with input as req(["finance"], 5, "payments:refund", {})
}

test_owner if {
	authz.allow with input as req([], 0, "docs:read", {"owner": "u1"})
	authz.headers == {"x-tenant": "default", "x-groups": "", "x-clearance": "0"} with input as req([], 0, "docs:read", {"owner": "u1"})
}

test_usage_limit if {
	not authz.allow with input as req(["admins"], 9, "x:y", {"usage": {"storage": 31}})
	authz.allow with input as req(["admins"], 9, "x:y", {"usage": {"storage": 30}})
	authz.limits == {"storage": 30, "seats": 5}
}

test_public if {
	authz.allow with input as req([], 0, "public:read", {})
	not authz.allow with input as json.patch(req([], 0, "public:read", {}), [{"op": "add", "path": "/action/segments/-", "value": "_x"}])
}

test_mocked_data if {
	authz.allow with input as req(["ops"], 1, "deploy:run", {}) with data.group_rules as {"ops": [{"action": "deploy:*", "level": 1}]}
}
