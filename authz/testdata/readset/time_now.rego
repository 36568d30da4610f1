package authz

allow if business_hours

business_hours if {
	[h, _, _] := time.clock(time.now_ns())
	h >= 9
	h < 17
}
