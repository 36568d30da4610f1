# An example attribute-based policy for the HTTP load comparison
# (test/load/run.sh, workload "abac"). The protected service names the
# resource in the /v1/decide body, for example
#
#   "resource": {"type": "order", "id": "42", "owner": "user-7", "tenant": "tenant-3"}
#
# and the policy compares its attributes with the verified token's claims:
#
#   - the subject's tenant claim must be the resource's tenant;
#   - one of the subject's roles must grant the action (data.roles);
#   - an action in data.owner_actions (orders:write) also needs the subject
#     to own the resource (its sub is the resource's owner).
#
# test/load/opabaseline/abac.rego.tmpl is the same policy written for OPA.
package authz

default allow := false

allow := outcome.allow

reasons := {outcome.reason}

default headers := {}

headers := {
	"x-verdict-action": action,
	"x-verdict-subject": input.subject.id,
	"x-verdict-tenant": input.resource.tenant,
} if allow

action := input.action.name

# same_tenant holds when the subject belongs to the resource's tenant.
same_tenant if input.subject.claims.tenant == input.resource.tenant

# owner holds when the subject owns the resource.
owner if input.subject.id == input.resource.owner

# granting_role is the first of the subject's roles that grants the action.
granting_role := [role |
	some role in input.subject.claims.roles
	action in data.roles[role]
][0]

# outcome is the decision and its reason: the first branch that applies.
outcome := {"allow": false, "reason": "no action"} if {
	not action
} else := {"allow": false, "reason": sprintf("anonymous access to %s is not allowed", [action])} if {
	not input.subject.authenticated
} else := {"allow": false, "reason": sprintf("the subject is not in tenant %v", [object.get(input.resource, "tenant", "(none)")])} if {
	not same_tenant
} else := {"allow": false, "reason": sprintf("no role grants %s", [action])} if {
	not granting_role
} else := {"allow": false, "reason": sprintf("only the owner may %s", [action])} if {
	action in data.owner_actions
	not owner
} else := {"allow": true, "reason": sprintf("role %s grants %s in tenant %s", [granting_role, action, input.resource.tenant])}
