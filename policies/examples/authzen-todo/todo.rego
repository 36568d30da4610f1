# Package todo decides the AuthZEN Todo interop scenario
# (interop/authzen-interop-website/docs/scenarios in the OpenID AuthZEN
# repository): may a user of the shared Todo app read users and todos,
# create todos, and complete or delete a todo?
#
# Requests come through the AuthZEN endpoints, so input.subject is asserted
# by the Todo backend (method "asserted"): {type: "user", id: <PID>}. The
# users' attributes (what the scenario calls the PIP) are users, keyed by
# PID (users.rego); a subject may also be named by its email. roles says
# what each role may do to any todo (any) and to the user's own todos
# (own):
#
#   viewer       read users and todos
#   editor       viewer + create todos, complete and delete their own
#   admin        editor + delete any todo
#   evil_genius  editor + complete any todo
#
# A todo's owner is resource.properties.ownerID, the owner's email.
# Serve it with policy.entrypoint: todo.
package todo

# user is the subject's record in users.
user := users[input.subject.id] if input.subject.type == "user"

user := u if {
	input.subject.type == "user"
	not users[input.subject.id]
	some u in users
	u.email == input.subject.id
}

action := input.action.name

# owner holds when the todo belongs to the subject.
owner if user.email == input.resource.properties.ownerID

# grants are the reasons an action is allowed.
grants contains sprintf("role %s grants %s", [role, action]) if {
	some role in user.roles
	action in roles[role].any
}

grants contains sprintf("role %s grants %s on the user's own todos", [role, action]) if {
	owner
	some role in user.roles
	action in roles[role].own
}

default allow := false

allow if count(grants) > 0

reasons := grants if allow

else := {"subject: not a known user"} if not user

else := {sprintf("no role of %s grants %s", [user.email, action])}
