# Checks of a bearer token's claims: a trusted issuer, this API among the
# audiences (a string or a list), not expired nor used before its time
# (against the request's time), a client on the allow-list, and the
# scopes (a space-separated string) that the endpoint requires.
package corpus

default claims := {}

claims := payload if [_, payload, _] := io.jwt.decode(input.token)

now := time.parse_rfc3339_ns(input.time) / 1000000000

audiences := [claims.aud] if {
	is_string(claims.aud)
} else := claims.aud

scopes := {s | some s in split(object.get(claims, "scope", ""), " "); s != ""}

endpoint := sprintf("%s %s", [input.method, input.path])

required_scopes := {s | some s in data.endpoints[endpoint].scopes}

problems contains "token without expiry" if not claims.exp

problems contains "untrusted issuer" if not claims.iss in data.trusted_issuers

problems contains "wrong audience" if not data.audience in audiences

problems contains "token expired" if now >= claims.exp + data.leeway_seconds

problems contains "token not yet valid" if now < claims.nbf - data.leeway_seconds

problems contains sprintf("client %s not allowed", [claims.azp]) if not claims.azp in data.clients

problems contains "unknown endpoint" if not data.endpoints[endpoint]

problems contains sprintf("missing scopes: %s", [concat(" ", sort(missing))]) if {
	missing := required_scopes - scopes
	count(missing) > 0
}

default allow := false

allow if count(problems) == 0

decision := {"allow": allow, "subject": object.get(claims, "sub", null), "problems": problems}
