package authz

has_role(role) if role in input.subject.claims.roles

allow if has_role("admin")
