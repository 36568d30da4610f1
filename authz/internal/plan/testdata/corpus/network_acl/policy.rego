# Network access control: a deny-list of address ranges (abuse feeds,
# sanctioned ranges) that applies to every service, per-service
# allow-lists for internal services, and a check of the proxy chain: the
# client address is the first X-Forwarded-For hop when the peer is one of
# our load balancers.
package corpus

from_proxy if {
	some cidr in data.load_balancers
	net.cidr_contains(cidr, input.peer_ip)
}

client_ip := input.forwarded_for[0] if {
	from_proxy
	count(input.forwarded_for) > 0
} else := input.peer_ip

service := data.services[input.service]

blocked contains entry.reason if {
	some entry in data.blocklist
	net.cidr_contains(entry.cidr, client_ip)
}

allowlisted if {
	some cidr in service.allow
	net.cidr_contains(cidr, client_ip)
}

default allow := false

allow if {
	service.exposure == "public"
	count(blocked) == 0
}

allow if {
	service.exposure == "internal"
	allowlisted
	count(blocked) == 0
}

reasons contains "unknown service" if not service

reasons contains sprintf("blocked: %s", [r]) if some r in blocked

reasons contains sprintf("%s is not allowed to reach %s", [client_ip, input.service]) if {
	service.exposure == "internal"
	not allowlisted
}

decision := {"allow": allow, "client_ip": client_ip, "reasons": reasons}
