# Approval of a change before it is merged and deployed: every changed
# file must be approved by a team that owns it (CODEOWNERS globs), the
# service's tier sets how many distinct approvers it needs, authors do not
# approve their own changes, and every check must have passed. Written
# with comprehensions and `every`.
package corpus

change := input.change

service := data.services[change.service]

# Teams, and the members of each, that approved, the author excepted.
approvers := {a.user | some a in change.approvals; a.user != change.author; a.state == "approved"}

approving_teams := {team |
	some team, members in data.teams
	some user in approvers
	user in members
}

owners(file) := {team |
	some rule in data.codeowners
	glob.match(rule.pattern, ["/"], file)
	some team in rule.teams
}

unowned := [f | some f in change.files; count(owners(f)) == 0]

unapproved := [f |
	some f in change.files
	count(owners(f)) > 0
	count(owners(f) & approving_teams) == 0
]

approvals_by_team := {team: count(members & approvers) |
	some team in approving_teams
	members := {m | some m in data.teams[team]}
}

required := data.tiers[service.tier].required_approvals

failed_checks := {name | some name, status in change.checks; status != "success"}

default approved := false

approved if {
	service
	count(approvers) >= required
	count(unowned) == 0
	every f in change.files {
		count(owners(f) & approving_teams) > 0
	}
	every name in data.tiers[service.tier].required_checks {
		change.checks[name] == "success"
	}
	not frozen
}

frozen if {
	change.environment == "production"
	some freeze in data.freezes
	service.tier in freeze.tiers
}

decision := {
	"allow": approved,
	"approvals_by_team": approvals_by_team,
	"unapproved_files": unapproved,
	"unowned_files": unowned,
	"failed_checks": failed_checks,
}
