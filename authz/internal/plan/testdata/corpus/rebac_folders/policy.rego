# Relationship-based access control in the style of Zanzibar: documents
# live in nested folders, folders grant relations (viewer, editor, owner)
# to users and groups, groups nest, and relations are inherited down the
# folder tree. An editor is also a viewer and an owner is both.
package corpus

# group_parents maps each group to the groups that contain it.
group_parents[g] := {parent |
	some parent, p in data.groups
	g in p.subgroups
} if some g, _ in data.groups

direct_groups contains g if {
	some g, group in data.groups
	input.user in group.members
}

user_groups := graph.reachable(group_parents, direct_groups)

principals := {sprintf("user:%s", [input.user])} | {sprintf("group:%s", [g]) | some g in user_groups}

# folder_parent maps each folder to its parent, if any.
folder_parent[f] := [p | p := folder.parent] if some f, folder in data.folders

document := data.documents[input.document]

folders := graph.reachable(folder_parent, {document.folder})

implied := {"owner": {"owner", "editor", "viewer"}, "editor": {"editor", "viewer"}, "viewer": {"viewer"}}

grants contains [relation, principal] if {
	some f in folders
	some relation, holders in data.folders[f].relations
	some principal in holders
}

grants contains [relation, principal] if {
	some relation, holders in document.relations
	some principal in holders
}

relations contains r if {
	some [relation, principal] in grants
	principal in principals
	some r in implied[relation]
}

required := {"read": "viewer", "comment": "viewer", "write": "editor", "share": "owner", "delete": "owner"}

default allow := false

allow if required[input.action] in relations

decision := {"allow": allow, "relations": relations}
