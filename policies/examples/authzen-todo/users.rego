package todo

# users are the scenario's users, by PID: the attributes the scenario
# expects a PIP to supply. They are Rego rather than a data.json so that
# the example reads the same wherever its directory is loaded from (a
# data.json is mounted at its directory's path: loaded as part of
# policies/, it would be data.examples["authzen-todo"]).
users := {
	"CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs": {
		"id": "rick@the-citadel.com",
		"name": "Rick Sanchez",
		"email": "rick@the-citadel.com",
		"roles": ["admin", "evil_genius"],
	},
	"CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs": {
		"id": "morty@the-citadel.com",
		"name": "Morty Smith",
		"email": "morty@the-citadel.com",
		"roles": ["editor"],
	},
	"CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs": {
		"id": "summer@the-smiths.com",
		"name": "Summer Smith",
		"email": "summer@the-smiths.com",
		"roles": ["editor"],
	},
	"CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs": {
		"id": "beth@the-smiths.com",
		"name": "Beth Smith",
		"email": "beth@the-smiths.com",
		"roles": ["viewer"],
	},
	"CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs": {
		"id": "jerry@the-smiths.com",
		"name": "Jerry Smith",
		"email": "jerry@the-smiths.com",
		"roles": ["viewer"],
	},
}

# roles say what each role may do to any todo (any) and to the user's own
# todos (own).
roles := {
	"viewer": {
		"any": ["can_read_user", "can_read_todos"],
		"own": [],
	},
	"editor": {
		"any": ["can_read_user", "can_read_todos", "can_create_todo"],
		"own": ["can_update_todo", "can_delete_todo"],
	},
	"admin": {
		"any": ["can_read_user", "can_read_todos", "can_create_todo", "can_delete_todo"],
		"own": ["can_update_todo", "can_delete_todo"],
	},
	"evil_genius": {
		"any": ["can_read_user", "can_read_todos", "can_create_todo", "can_update_todo"],
		"own": ["can_update_todo", "can_delete_todo"],
	},
}
