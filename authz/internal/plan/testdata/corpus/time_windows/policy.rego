# Access by time: each team works within hours in its own time zone on
# given days, changes to a service are frozen during its maintenance
# windows and the holiday freeze, and on-call engineers may break glass
# with an incident number at any time. The request carries its time.
package corpus

ts := time.parse_rfc3339_ns(input.time)

user := data.users[input.user]

schedule := data.schedules[user.team]

day := time.weekday([ts, schedule.timezone])

minute_of_day := (h * 60) + m if [h, m, _] := time.clock([ts, schedule.timezone])

minutes(hhmm) := (to_number(h) * 60) + to_number(m) if [h, m] := split(hhmm, ":")

within_hours if {
	day in schedule.days
	minutes(schedule.start) <= minute_of_day
	minute_of_day < minutes(schedule.end)
}

between(w) if {
	time.parse_rfc3339_ns(w.start) <= ts
	ts < time.parse_rfc3339_ns(w.end)
}

in_maintenance contains w.name if {
	some w in data.maintenance_windows
	input.service in w.services
	between(w)
}

frozen if {
	input.action in {"deploy", "configure"}
	some w in data.freezes
	between(w)
}

default break_glass := false

break_glass if {
	input.user in data.oncall[input.service]
	regex.match(`^INC-[0-9]{4,}$`, input.incident)
}

reasons contains "unknown user" if not user

reasons contains sprintf("outside working hours of %s", [user.team]) if {
	user
	not within_hours
}

reasons contains sprintf("service in maintenance (%s)", [name]) if some name in in_maintenance

reasons contains "change freeze" if frozen

default allow := false

allow if count(reasons) == 0

allow if break_glass

decision := {"allow": allow, "break_glass": break_glass, "reasons": reasons}
