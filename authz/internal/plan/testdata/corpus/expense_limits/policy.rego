# Approval of expenses and payments: amounts are converted to the company
# currency, each grade of employee has a spending limit per category,
# larger amounts need the manager (or the manager's manager above a
# threshold), some merchant countries are sanctioned, and receipts are
# required above a floor.
package corpus

employee := data.employees[input.employee]

default amount_eur := null

amount_eur := round((input.amount * data.fx_to_eur[input.currency]) * 100) / 100

limit(grade, category) := data.limits[grade][category]

limit(grade, category) := data.limits[grade].default if not data.limits[grade][category]

approver := employee.manager if {
	amount_eur > limit(employee.grade, input.category)
	amount_eur <= limit(employee.grade, input.category) * data.escalation_factor
} else := data.employees[employee.manager].manager if {
	amount_eur > limit(employee.grade, input.category) * data.escalation_factor
}

problems contains "unknown employee" if not employee

problems contains sprintf("unsupported currency %s", [input.currency]) if not data.fx_to_eur[input.currency]

problems contains sprintf("payments to %s are not allowed", [input.merchant.country]) if {
	input.merchant.country in data.sanctioned_countries
}

problems contains "receipt required" if {
	amount_eur >= data.receipt_floor_eur
	not input.receipt_id
}

problems contains sprintf("category %s not allowed for %s", [input.category, employee.grade]) if {
	input.category in data.restricted_categories[employee.grade]
}

default allow := false

allow if {
	employee
	count(problems) == 0
	not approver
}

default approver_name := null

approver_name := approver

decision := {
	"allow": allow,
	"amount_eur": amount_eur,
	"approver": approver_name,
	"reasons": problems,
}
