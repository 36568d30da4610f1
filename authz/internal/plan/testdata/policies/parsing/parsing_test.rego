package authz_test

import data.authz

req(size, client, payload) := {
	"subject": {"authenticated": true, "id": "u", "claims": {"scopes": ["read"], "quota": "2048"}},
	"caller": {"authenticated": false, "method": "none"},
	"action": {"name": "files:put", "path": "/a/b/"},
	"resource": {"size": size},
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "r", "attributes": {"client": client, "payload": payload}},
}

read_scope := base64url.encode(json.marshal({"scope": "read"}))

test_allow if {
	authz.allow with input as req("1KB", "v1.3.0", read_scope)
	authz.headers == {"x-size": "1000", "x-scope": "read"} with input as req("1KB", "v1.3.0", read_scope)
}

test_too_big if {
	not authz.allow with input as req("3KiB", "v1.3.0", read_scope)
}

test_old_client if {
	authz.reasons == {"client too old"} with input as req("1KB", "1.1.9", read_scope)
}

test_segments if {
	authz.parts == {0: "A", 1: "B"} with input as req("1KB", "v1.3.0", read_scope)
}
