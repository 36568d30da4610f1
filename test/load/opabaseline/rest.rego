# An addition to the OPA baseline (policy.rego.tmpl rendered with
# Action: opabaseline.RESTAction) for the load comparison's "rest" workload:
# the input is {"method": M, "path": P, "token": T}, what a forward-auth
# request carries, and the action is named from the method and path as the
# default policy names it (policies/authz/action.rego): the first path
# segment, a colon, the method's verb. GET /orders/42 is orders:read.
package opa_authz

rest_action := concat(":", [path_resource, verbs[upper(input.method)]])

verbs := {
	"GET": "read",
	"HEAD": "read",
	"OPTIONS": "read",
	"POST": "write",
	"PUT": "write",
	"PATCH": "write",
	"DELETE": "delete",
}

path_segments := [s | some s in split(split(input.path, "?")[0], "/"); s != ""]

path_resource := path_segments[0] if not contains(path_segments[0], ":")
