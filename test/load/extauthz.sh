#!/usr/bin/env bash
# ext_authz load comparison: Verdict's ext_authz gRPC listener against
# opa-envoy-plugin (OPA with its Envoy ext_authz gRPC server) doing the same
# job in Rego, in the same run, as ratios. Results and method: BENCHMARKS.md,
# "ext_authz: Verdict against opa-envoy-plugin".
#
# Usage (from anywhere in the repository; needs taskset, curl, go, 2+ cores):
#   OPA_ENVOY_BIN=path/to/opa_envoy test/load/extauthz.sh
# OPA_ENVOY_BIN is opa-envoy-plugin's binary, built from its source
# (github.com/open-policy-agent/opa-envoy-plugin: go build ./cmd/opa-envoy-plugin);
# the Go module proxy does not serve that module, so the script cannot build it.
#
# The workload is test/load/run.sh's "rest" as Envoy carries it
# (test/load/grpcload check -tokens): 1,000 viewer tokens cycled as
# Authorization: Bearer, /orders/<a new id every call>, GET six times in
# eight (allow), POST and DELETE (deny). Verdict serves the embedded default
# policy; opa-envoy-plugin the OPA baseline (test/load/opabaseline: Policy
# with EnvoyModule, io.jwt.decode_verify with its io_jwt cache on, no
# decision logs), answering Check with data.opa_authz.allow. grpcload checks
# each server's answers to every question before it measures and the share
# allowed after: a server cannot look fast by answering wrong.
# Knobs (environment):
#   ROUNDS=3                alternating rounds; the summary reports medians
#   DURATION=10             seconds per measured run (after a WARMUP=3 s warm-up)
#   CONNS=2 WORKERS=16      gRPC connections and goroutines asking (Envoy's way:
#                           many calls at once on few connections)
#   MODES="pinned unpinned" pinned: server `taskset -c 1` GOMAXPROCS=1, grpcload
#                           `taskset -c 0`; unpinned: no taskset
#   VERDICT_BIN=path        use this verdict binary instead of building ./cmd/verdict
# Nothing leaves loopback; keys and tokens are generated into a temporary
# directory deleted on exit; every process started is stopped.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-2}
WORKERS=${WORKERS:-16}
MODES=${MODES:-"pinned unpinned"}

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
[ -x "${OPA_ENVOY_BIN:-}" ] || { echo "extauthz.sh: set OPA_ENVOY_BIN to opa-envoy-plugin's binary (see the header)" >&2; exit 2; }
for tool in taskset curl go; do
	command -v "$tool" >/dev/null || { echo "extauthz.sh: $tool not found" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/verdict-extauthz.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "extauthz.sh: $*" >&2; exit 1; }

go build -o "$TMP/gen" ./test/load/gen
go build -o "$TMP/grpcload" ./test/load/grpcload
if [ -n "${VERDICT_BIN:-}" ]; then cp "$VERDICT_BIN" "$TMP/verdict"; else go build -o "$TMP/verdict" ./cmd/verdict; fi
"$TMP/gen" -out "$TMP/load" -alg RS256 -workloads rest >/dev/null
WL=$TMP/load/rs256/rest
TOKENS=$TMP/load/rs256/tokens.txt
log "opa-envoy-plugin: $("$OPA_ENVOY_BIN" version | tr '\n' ' ')"

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# start SERVER MODE: starts it; sets SPID and GADDR (its ext_authz address).
start() {
	local srv=$1 mode=$2 pre=() hport gport i health
	hport=$(free_port)
	gport=$(free_port)
	GADDR=127.0.0.1:$gport
	if [ "$mode" = pinned ]; then pre=(env GOMAXPROCS=1 taskset -c 1); fi
	if [ "$srv" = verdict ]; then
		{ cat "$WL/verdict/verdict.yaml"; printf 'ext_authz:\n  grpc_addr: %s\n' "$GADDR"; } >"$WL/verdict/extauthz.yaml"
		(cd "$WL/verdict" && exec "${pre[@]}" "$TMP/verdict" serve --config extauthz.yaml \
			--addr "127.0.0.1:$hport" --log-level error >"$TMP/$srv.log" 2>&1) &
		health=/health/ready
	else
		(cd "$WL/opa-envoy" && exec "${pre[@]}" "$OPA_ENVOY_BIN" run --server --addr "127.0.0.1:$hport" \
			--log-level error --skip-version-check --config-file config.yaml \
			--set "plugins.envoy_ext_authz_grpc.addr=$GADDR" bundle >"$TMP/$srv.log" 2>&1) &
		health=/health
	fi
	SPID=$!
	PIDS+=("$SPID")
	for i in $(seq 1 150); do
		if curl -sf -m 2 -o /dev/null "http://127.0.0.1:$hport$health" 2>/dev/null; then break; fi
		kill -0 "$SPID" 2>/dev/null || { cat "$TMP/$srv.log" >&2; die "$srv exited"; }
		sleep 0.2
	done
	# The gRPC listener may come up after the health endpoint.
	for i in $(seq 1 50); do
		(exec 3<>"/dev/tcp/127.0.0.1/$gport") 2>/dev/null && return
		sleep 0.1
	done
	die "$srv: nothing listening on $GADDR"
}

stop() { kill "$SPID" 2>/dev/null || true; wait "$SPID" 2>/dev/null || true; }

# load MODE DURATION: grpcload against GADDR; prints its line.
load() {
	local pre=()
	if [ "$1" = pinned ]; then pre=(taskset -c 0); fi
	"${pre[@]}" "$TMP/grpcload" check -addr "$GADDR" -c "$CONNS" -w "$WORKERS" -d "${2}s" -pid "$SPID" -tokens "$TOKENS"
}

RESULTS=$TMP/results.txt
for round in $(seq 1 "$ROUNDS"); do
	for mode in $MODES; do
		order="verdict opa"
		if [ $((round % 2)) = 0 ]; then order="opa verdict"; fi
		for srv in $order; do
			start "$srv" "$mode"
			load "$mode" "$WARMUP" >/dev/null || die "$srv ($mode) warm-up: answers not as designed"
			line=$(load "$mode" "$DURATION") || die "$srv ($mode): $line"
			rss=$(awk '/^VmHWM/ {print $2}' "/proc/$SPID/status")
			stop
			log "round $round $mode $srv: $line peak-rss-kib $rss"
			echo "$round $mode $srv $line rss $rss" >>"$RESULTS"
		done
	done
done

echo "== medians over $ROUNDS rounds; ratios are Verdict/OPA within each round, then the median"
awk '
function median(list,   a, n, i, j, t) {
	n = split(list, a, ",")
	for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) { if (k in vals) vals[k] = vals[k] "," v; else vals[k] = v }
{
	# round mode server calls/s N failed N allowed X server-cpu-us/call C rss R
	add($2 SUBSEP $3 SUBSEP "cps", $5); add($2 SUBSEP $3 SUBSEP "cpu", $11); add($2 SUBSEP $3 SUBSEP "rss", $13)
	cps[$1 SUBSEP $2 SUBSEP $3] = $5; cpu[$1 SUBSEP $2 SUBSEP $3] = $11; modes[$2] = 1; rounds[$1] = 1
}
END {
	printf "%-9s %14s %12s %10s %14s %12s %10s %10s %10s\n", "mode", "verdict c/s", "cpu/call", "rss", "opa c/s", "cpu/call", "rss", "c/s V/O", "cpu O/V"
	for (m in modes) {
		r1 = ""; r2 = ""
		for (r in rounds) {
			v = r SUBSEP m SUBSEP "verdict"; o = r SUBSEP m SUBSEP "opa"
			if ((v in cps) && (o in cps)) {
				r1 = r1 (r1 == "" ? "" : ",") cps[v] / cps[o]
				r2 = r2 (r2 == "" ? "" : ",") cpu[o] / cpu[v]
			}
		}
		printf "%-9s %14.0f %10.0fus %7.0fMiB %14.0f %10.0fus %7.0fMiB %9.2fx %9.2fx\n", m,
			median(vals[m SUBSEP "verdict" SUBSEP "cps"]), median(vals[m SUBSEP "verdict" SUBSEP "cpu"]), median(vals[m SUBSEP "verdict" SUBSEP "rss"]) / 1024,
			median(vals[m SUBSEP "opa" SUBSEP "cps"]), median(vals[m SUBSEP "opa" SUBSEP "cpu"]), median(vals[m SUBSEP "opa" SUBSEP "rss"]) / 1024,
			median(r1), median(r2)
	}
}' "$RESULTS"
