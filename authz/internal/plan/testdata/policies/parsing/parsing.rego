# Package authz reads structured values out of free-form request fields:
# numbers, base64 and JSON payloads, byte sizes, semantic versions.
package authz

default allow := false

allow if {
	quota_ok
	version_ok
	payload.scope in input.subject.claims.scopes
}

reasons contains "quota exceeded" if not quota_ok

reasons contains "client too old" if not version_ok

reasons contains sprintf("scope %v not granted", [payload.scope]) if {
	not payload.scope in input.subject.claims.scopes
}

reasons contains "ok" if allow

headers := {"x-size": format_int(size, 10), "x-scope": sprintf("%v", [payload.scope])} if allow

else := {}

size := units.parse_bytes(input.resource.size)

quota_ok if size <= to_number(object.get(input.subject.claims, "quota", "1048576"))

version_ok if semver.compare(trim_prefix(input.context.attributes.client, "v"), "1.2.0") >= 0

payload := json.unmarshal(base64url.decode(input.context.attributes.payload))

segments := [upper(s) | some s in split(trim(input.action.path, "/"), "/")]

parts[i] := s if some i, s in segments
