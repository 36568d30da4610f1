package authz

fetch(_) := {"status_code": 500}

allow if {
	resp := fetch({}) with fetch as http.send
	resp.status_code == 200
}
