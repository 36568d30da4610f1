package authz_test

# Builders for test inputs, shaped exactly like the engine's input document.

# user is a verified subject with the given roles claim.
user(id, roles) := {
	"authenticated": true,
	"id": id,
	"issuer": "https://idp.example.com",
	"claims": {"sub": id, "iss": "https://idp.example.com", "roles": roles},
}

anonymous := {"authenticated": false}

no_caller := {"authenticated": false, "method": "none"}

# service is a caller that proved itself with a service token (id is its azp).
service(id) := {"authenticated": true, "id": id, "method": "token", "claims": {"azp": id}}

# mtls_service is a caller that proved itself with a client certificate.
mtls_service(spiffe_id) := {
	"authenticated": true,
	"id": spiffe_id,
	"method": "mtls",
	"spiffe_id": spiffe_id,
	"certificate": {
		"subject": "CN=payments",
		"issuer": "CN=shop CA",
		"serial": "1",
		"dns_names": [],
		"uris": [spiffe_id],
		"not_after": "2030-01-01T00:00:00Z",
	},
}

ctx := {"time": "2026-01-01T00:00:00Z", "request_id": "req-1"}

# named is a request for a named action (the PEP set input.action.name).
named(subject, caller, name) := {
	"subject": subject,
	"caller": caller,
	"action": {"name": name},
	"resource": {},
	"context": ctx,
}

# forwarded is a forward-auth request with no action name: only method and path.
forwarded(subject, method, path) := {
	"subject": subject,
	"caller": no_caller,
	"action": {"method": method, "path": path, "segments": [s | some s in split(path, "/"); s != ""]},
	"resource": {},
	"context": ctx,
}

alice_viewer := user("alice", ["viewer"])

bob_editor := user("bob", ["editor"])

root_admin := user("root", ["admin"])
