package todo_test

import data.todo

rick := "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"

morty := "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"

summer := "CiRmZDI2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"

beth := "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"

jerry := "CiRmZDQ2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs"

# ask is the input document an AuthZEN request for subject, action and
# resource becomes.
ask(subject, action, resource) := {
	"subject": {"authenticated": true, "method": "asserted", "type": "user", "id": subject},
	"caller": {"authenticated": false, "method": "none"},
	"action": {"name": action},
	"resource": resource,
	"context": {"time": "2026-01-01T00:00:00Z", "request_id": "test"},
}

todo_of(owner) := {"type": "todo", "id": "7240d0db-8ff0-41ec-98b2-34a096273b9f", "properties": {"ownerID": owner}}

a_todo := {"type": "todo", "id": "todo-1"}

test_everyone_reads_users_and_todos if {
	every pid in [rick, morty, summer, beth, jerry] {
		todo.allow with input as ask(pid, "can_read_user", {"type": "user", "id": "beth@the-smiths.com"})
		todo.allow with input as ask(pid, "can_read_todos", a_todo)
	}
}

test_editors_and_admins_create if {
	every pid in [rick, morty, summer] {
		todo.allow with input as ask(pid, "can_create_todo", a_todo)
	}
	every pid in [beth, jerry] {
		not todo.allow with input as ask(pid, "can_create_todo", a_todo)
	}
}

test_editor_updates_and_deletes_own_todos_only if {
	todo.allow with input as ask(morty, "can_update_todo", todo_of("morty@the-citadel.com"))
	todo.allow with input as ask(morty, "can_delete_todo", todo_of("morty@the-citadel.com"))
	not todo.allow with input as ask(morty, "can_update_todo", todo_of("rick@the-citadel.com"))
	not todo.allow with input as ask(morty, "can_delete_todo", todo_of("summer@the-smiths.com"))
	todo.reasons == {"role editor grants can_update_todo on the user's own todos"} with input as ask(morty, "can_update_todo", todo_of("morty@the-citadel.com"))
	todo.reasons == {"no role of morty@the-citadel.com grants can_delete_todo"} with input as ask(morty, "can_delete_todo", todo_of("summer@the-smiths.com"))
}

test_evil_genius_updates_any_todo if {
	todo.allow with input as ask(rick, "can_update_todo", todo_of("morty@the-citadel.com"))
	todo.reasons == {"role evil_genius grants can_update_todo"} with input as ask(rick, "can_update_todo", todo_of("morty@the-citadel.com"))
}

test_admin_deletes_any_todo if {
	todo.allow with input as ask(rick, "can_delete_todo", todo_of("jerry@the-smiths.com"))
	todo.reasons == {"role admin grants can_delete_todo"} with input as ask(rick, "can_delete_todo", todo_of("jerry@the-smiths.com"))
}

test_viewers_change_nothing_even_their_own if {
	every pid in [beth, jerry] {
		every action in ["can_update_todo", "can_delete_todo"] {
			not todo.allow with input as ask(pid, action, todo_of(todo.users[pid].email))
		}
	}
}

test_todo_without_owner_is_nobodys if {
	not todo.allow with input as ask(morty, "can_update_todo", a_todo)
	todo.allow with input as ask(rick, "can_update_todo", a_todo)
}

test_subject_by_email if {
	todo.allow with input as ask("summer@the-smiths.com", "can_create_todo", a_todo)
	not todo.allow with input as ask("jerry@the-smiths.com", "can_create_todo", a_todo)
}

test_unknown_subject_is_denied if {
	not todo.allow with input as ask("CiRub2JvZHk", "can_read_todos", a_todo)
	todo.reasons == {"subject: not a known user"} with input as ask("CiRub2JvZHk", "can_read_todos", a_todo)
}

test_subject_must_be_a_user if {
	not todo.allow with input as object.union(ask(rick, "can_read_todos", a_todo), {"subject": {"authenticated": true, "method": "asserted", "type": "service", "id": rick}})
}

test_unknown_action_is_denied if {
	not todo.allow with input as ask(rick, "can_destroy_everything", a_todo)
	todo.reasons == {"no role of rick@the-citadel.com grants can_destroy_everything"} with input as ask(rick, "can_destroy_everything", a_todo)
}
