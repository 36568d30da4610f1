package authz

allow if time.parse_rfc3339_ns(input.context.time) < time.parse_rfc3339_ns("2030-01-01T00:00:00Z")
