package authz_test

import data.authz

base := {
	"subject": {"authenticated": true, "id": "alice", "claims": {"uid": 1, "level": 3}},
	"caller": {"authenticated": false, "method": "none"},
	"action": {"name": "a:b"},
	"resource": {},
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "r", "remote_addr": "203.0.113.9"},
}

test_allowed if {
	authz.allow with input as base
	authz.reasons == {"nothing denies"} with input as base
	authz.headers == {"x-level": "low"} with input as base
}

test_blocked_key if {
	not authz.allow with input as json.patch(base, [{"op": "replace", "path": "/subject/claims/uid", "value": "42"}])
	authz.allow with input as json.patch(base, [{"op": "replace", "path": "/subject/claims/uid", "value": "x"}])
}

test_blocked_index if {
	not authz.allow with input as json.patch(base, [
		{"op": "replace", "path": "/subject/id", "value": "trudy"},
		{"op": "add", "path": "/subject/claims/index", "value": 1},
	])
}

test_network if {
	not authz.allow with input as json.patch(base, [{"op": "replace", "path": "/context/remote_addr", "value": "10.66.1.2"}])
}

test_custom if {
	authz.reasons == {"archived resource"} with input as json.patch(base, [{"op": "replace", "path": "/resource", "value": {"state": "archived"}}])
}
