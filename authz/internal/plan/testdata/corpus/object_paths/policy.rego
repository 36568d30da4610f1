# An object store's bucket policies, written like IAM statements: each
# statement matches principals, actions (globs such as "s3:Get*") and
# object paths (globs over "/" segments, "**" for any depth, and
# "${user}" for the caller's home), and an explicit Deny wins over any
# Allow. Object keys are also checked for traversal and hidden files.
package corpus

resource := concat("/", [input.bucket, input.key])

principal_ids contains sprintf("user:%s", [input.principal.id])

principal_ids contains sprintf("team:%s", [team]) if some team in input.principal.teams

principal_ids contains "*"

expand(pattern) := replace(pattern, "${user}", input.principal.id)

matches(stmt) if {
	some p in stmt.principals
	p in principal_ids
	some a in stmt.actions
	glob.match(a, [], input.action)
	some r in stmt.resources
	glob.match(expand(r), ["/"], resource)
}

matched contains [stmt.effect, stmt.sid] if {
	some stmt in data.buckets[input.bucket].statements
	matches(stmt)
}

explicit_deny contains sid if some ["Deny", sid] in matched

allowed_by contains sid if some ["Allow", sid] in matched

invalid_key contains "path traversal" if regex.match(`(^|/)\.\.?(/|$)`, input.key)

invalid_key contains "hidden object" if {
	startswith(input.action, "s3:Put")
	regex.match(`(^|/)\.[^/]+$`, input.key)
}

invalid_key contains "key too long" if count(input.key) > 1024

invalid_key contains "empty key" if input.key == ""

default allow := false

allow if {
	count(allowed_by) > 0
	count(explicit_deny) == 0
	count(invalid_key) == 0
}

decision := {
	"allow": allow,
	"allowed_by": allowed_by,
	"denied_by": explicit_deny,
	"invalid": invalid_key,
}
