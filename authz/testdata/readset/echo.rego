# echo repeats in its answer what it reads, so that a wrong decision cache
# hit, or two requests a key merged wrongly, show different answers.
package authz

allow if "admin" in input.subject.claims.roles

allow if input.caller.spiffe_id == "spiffe://shop/payments"

allow if object.get(input.resource, ["meta", "owner"], "") == input.subject.id

reasons := [sprintf("%v|%v|%v|%v|%v|%v|%v", [
	object.get(input.subject, ["claims", "tenant"], "-"),
	object.get(input.action, "method", "-"),
	object.get(input.resource, ["meta", "owner"], "-"),
	object.get(input.action, ["segments", 0], "-"),
	object.get(input.action, ["segments", 1], "-"),
	object.get(input.caller, "id", "-"),
	object.get(input.subject, ["properties", "dept"], "-"),
])]

headers["x-method"] := input.action.method

headers["x-owner"] := sprintf("%v", [input.resource.meta.owner]) if allow

headers["x-items"] := concat(",", [id | some item in input.resource.items; id := sprintf("%v", [item.id])]) if allow
