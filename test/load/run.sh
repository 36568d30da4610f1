#!/usr/bin/env bash
# HTTP load comparison: Verdict's HTTP service against OPA's own server
# (`opa run --server`) doing the same job in Rego (io.jwt.decode_verify with
# its io_jwt cache on), workload by workload, in the same run, as ratios.
# Results and method: BENCHMARKS.md, "HTTP server vs `opa run --server` (wrk)".
#
# Usage (from anywhere in the repository; needs wrk, taskset, curl, go, 2+ cores):
#   test/load/run.sh
# Workloads (WORKLOADS, in this order; test/load/gen writes both sides' requests):
#   cached   /v1/decide, 1,000 viewer tokens cycled, orders:read (all allow)
#   cert     /v1/decide with the calling service's certificate (PEM) in the body
#            ("caller": {"certificate": ...}), 1,000 tokens cycled over 8 questions
#            through 4 services; policy test/load/examples/caller: roles AND a
#            calling-service allowlist (5/8 allow). OPA verifies the chain in Rego
#            (crypto.x509.parse_and_verify_certificates_with_options)
#   rest     forward-auth /v1/check: X-Forwarded-Method + X-Forwarded-Uri
#            /orders/<id>, a new id every request, bearer token (1,000 cycled),
#            the default policy naming the action from method and path (6/8 allow:
#            GET allowed, POST and DELETE denied). OPA: POST {method, path, token}
#   new5k    every token new (NEW_POOL tokens), cycling 5,000 subjects (all allow)
#   newall   every token new, every one a distinct subject (all allow)
#   abac     /v1/decide with a resource {type, id, owner, tenant}, 1,000 tokens
#            with a tenant claim cycled over 8 questions; policy
#            test/load/examples/abac: tenant and owner against the claims (5/8 allow)
# Both sides answer the same questions with the same policy semantics (OPA's
# policies: test/load/opabaseline; Verdict's: the embedded default, or
# test/load/examples) and the same reasons. Where the jobs differ:
#   cert  OPA verifies the chain in Rego on every request and converts the
#         whole parsed certificate to a Rego value; Verdict verifies it in Go
#         and keeps a verified certificate a minute (by SHA-256 of the PEM).
#         Verdict also believes a body certificate only from
#         callers.trusted_proxies (127.0.0.1 here); OPA has no such check.
#   rest  Verdict refuses ambiguous paths (dot segments, encoded separators,
#         `;` parameters, …) and mixed or repeated forwarded headers before
#         the policy and answers 200/403; OPA only splits input.path in Rego
#         (no such checks: a lighter job) and answers 200 with the result.
# Knobs (environment):
#   ALGS="RS256 ES256"      signing algorithms (one issuer each)
#   WORKLOADS="cached cert rest new5k newall abac"   ("new" = new5k)
#   ROUNDS=3                alternating rounds; the summary reports medians
#   DURATION=10             seconds per measured wrk run
#   WARMUP=3                seconds of warm-up (the workload on its 1,000-token pool,
#                           64 conns) after each server start
#   CONNS="8 64"            wrk connection counts
#   MODES="pinned unpinned" pinned: server `taskset -c 1` GOMAXPROCS=1, wrk `taskset -c 0 -t1`;
#                           unpinned: no taskset, default GOMAXPROCS, wrk -t2
#   NEW_POOL=400000         size of each every-token-new pool (minting RS256 takes
#                           ~1 ms/token/core; a run that needs more tokens than the
#                           pool holds is flagged "new pool wrapped")
#   MIX_TOLERANCE=0.02      allowed gap between Verdict's measured allow share and the
#                           workload's design before the run fails
#   PROFILE=1               afterwards, perf-profile each server under pinned 64-conn load
#   MAX_SECONDS=10800       hard bound on the whole run
#   KEEP=1                  keep the temporary directory (tokens! delete it yourself)
#   OPA_BIN=path            use this OPA binary (must report the version in go.mod)
#   VERDICT_BIN=path        use this verdict binary instead of building ./cmd/verdict
# Every answer is checked: after each server start every question of the
# workload is asked and must get its designed allow/deny and reason (both
# servers); after each measured run Verdict's decision counters must show
# the designed allow share (on /v1/check, also the share of 403s), and
# errors and non-2xx answers where a deny is a 200 must stay within a small
# budget (requests cancelled when wrk closes its connections). Otherwise
# the run stops with exit 1: a workload cannot look fast by answering wrong.
# Nothing leaves loopback. Keys, certificates and tokens are generated into
# a temporary directory at run time and deleted on exit; every process
# started is stopped.
set -euo pipefail

ALGS=${ALGS:-"RS256 ES256"}
WORKLOADS=${WORKLOADS:-"cached cert rest new5k newall abac"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"8 64"}
MODES=${MODES:-"pinned unpinned"}
NEW_POOL=${NEW_POOL:-400000}
MIX_TOLERANCE=${MIX_TOLERANCE:-0.02}
PROFILE=${PROFILE:-1}
MAX_SECONDS=${MAX_SECONDS:-10800}

wl_list=""
for wl in $WORKLOADS; do
	case $wl in
	new) wl=new5k ;;
	cached | cert | rest | new5k | newall | abac) ;;
	*) echo "run.sh: unknown workload $wl (want: cached cert rest new5k newall abac)" >&2; exit 2 ;;
	esac
	wl_list="$wl_list $wl"
done
WORKLOADS=${wl_list# }

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"

for tool in wrk taskset curl go; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not found (wrk: apt-get install -y wrk)" >&2; exit 2; }
done
if [ "$(nproc)" -lt 2 ]; then echo "run.sh: needs at least 2 cores" >&2; exit 2; fi

TMP=$(mktemp -d /tmp/verdict-load.XXXXXX)
PIDS=()
cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ "${KEEP:-0}" = 1 ]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# Watchdog: bound the run time. Stopping it stops its sleep too (which
# would otherwise hold the script's output open until it ends).
(
	trap 'kill "$sleeper" 2>/dev/null; exit 0' TERM
	sleep "$MAX_SECONDS" &
	sleeper=$!
	wait "$sleeper"
	echo "run.sh: MAX_SECONDS=$MAX_SECONDS reached, stopping" >&2
	kill -TERM $$
) &
PIDS+=($!)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }

# --- binaries ---------------------------------------------------------------
OPA_VERSION=$(go list -m -f '{{.Version}}' github.com/open-policy-agent/opa)
go build -o "$TMP/gen" ./test/load/gen
if [ -n "${VERDICT_BIN:-}" ]; then
	log "verdict from $VERDICT_BIN; OPA $OPA_VERSION"
	cp "$VERDICT_BIN" "$TMP/verdict"
else
	log "building verdict; OPA $OPA_VERSION"
	go build -o "$TMP/verdict" ./cmd/verdict
fi
CACHED_OPA="$HOME/.cache/verdict-test/opa-$OPA_VERSION-linux-amd64"
if [ -n "${OPA_BIN:-}" ]; then
	cp "$OPA_BIN" "$TMP/opa"
elif [ -x "$CACHED_OPA" ]; then
	cp "$CACHED_OPA" "$TMP/opa"
else
	log "building opa $OPA_VERSION from the module (go build github.com/open-policy-agent/opa)"
	go build -o "$TMP/opa" github.com/open-policy-agent/opa
fi
opa_version=$("$TMP/opa" version)
grep -q "^Version: ${OPA_VERSION#v}\$" <<<"$opa_version" ||
	{ echo "run.sh: $TMP/opa is not OPA $OPA_VERSION" >&2; exit 2; }

# --- helpers ----------------------------------------------------------------
free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range (wrk's client ports)
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
	done
}

# conf WLDIR KEY: a value of the workload's workload.conf (written by gen).
conf() { sed -n "s/^$2=//p" "$1/workload.conf"; }

# start_server verdict|opa pinned|unpinned WLDIR: sets SPID, SPORT, SURL, SRV.
# Ready when healthy and every question of the workload gets its designed
# answer (gen check; from the end of a new-token pool, which no measured run
# reaches).
start_server() {
	local srv=$1 mode=$2 wdir=$3 pre=() health i from_end=()
	SPORT=$(free_port)
	SURL="http://127.0.0.1:$SPORT"
	SRV=$srv
	if [ "$mode" = pinned ]; then pre=(env GOMAXPROCS=1 taskset -c 1); fi
	if [ "$srv" = verdict ]; then
		(cd "$wdir/verdict" && exec "${pre[@]}" "$TMP/verdict" serve --config verdict.yaml \
			--addr "127.0.0.1:$SPORT" --log-level error >"$TMP/$srv.log" 2>&1) &
		health=/health/ready
	else
		(cd "$wdir/opa" && exec "${pre[@]}" "$TMP/opa" run --server --addr "127.0.0.1:$SPORT" \
			--log-level error --skip-version-check --config-file config.yaml \
			bundle >"$TMP/$srv.log" 2>&1) &
		health=/health
	fi
	SPID=$!
	PIDS+=("$SPID")
	RUN_N=0
	for i in $(seq 1 150); do
		if curl -sf -m 2 -o /dev/null "$SURL$health" 2>/dev/null; then break; fi
		kill -0 "$SPID" 2>/dev/null || break
		[ "$i" = 150 ] || sleep 0.2
	done
	if [ "$(conf "$wdir" fresh)" = 1 ]; then from_end=(-from-end); fi
	if ! "$TMP/gen" check -url "$SURL" -server "$srv" -dir "$wdir" "${from_end[@]}" >"$TMP/check.out" 2>&1; then
		cat "$TMP/check.out" >&2
		echo "run.sh: $srv log:" >&2; cat "$TMP/$srv.log" >&2
		die "$srv does not answer workload $(basename "$wdir") as designed"
	fi
	log "$(cat "$TMP/check.out")"
}

stop_server() {
	kill "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
}

# cpu_ticks PID: utime+stime of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# verdict_counts API: Verdict's decisions so far on API: "allow deny error".
verdict_counts() {
	curl -sf -m 5 "$SURL/metrics" | awk -v api="$1" '
		index($1, "verdict_decisions_total{") == 1 && index($1, "api=\"" api "\"") {
			if (index($1, "result=\"allow\"")) a = $2 + 0
			if (index($1, "result=\"deny\"")) d = $2 + 0
			if (index($1, "result=\"error\"")) e = $2 + 0
		}
		END { printf "%d %d %d\n", a, d, e }'
}

# wrk_run MODE CONNS DURATION TEMPLATES POOL FIRST: prints the RESULT line.
# FIRST numbers the run's requests (@N@: the ids of the rest and abac
# workloads). No number repeats within one server process: its warm-up
# starts at 1,500,000,000, its checks at 900,000,000, and its measured runs
# at 10,000,000 apart (next_first).
wrk_run() {
	local mode=$1 c=$2 d=$3 tmpl=$4 pool=$5 first=$6 pre=() t=2
	if [ "$mode" = pinned ]; then pre=(taskset -c 0); t=1; fi
	"${pre[@]}" wrk -t"$t" -c"$c" -d"${d}s" --timeout 10s -s "$TMP/load.lua" "$SURL" -- \
		"$tmpl" "$pool" "$t" "$first" | grep '^RESULT'
}

# next_first: sets FIRST for the server's next measured run.
next_first() { RUN_N=$((RUN_N + 1)); FIRST=$((RUN_N * 10000000)); }

# warm_up MODE WLDIR: the workload's questions on its 1,000-token pool.
warm_up() {
	local wdir=$2
	wrk_run "$1" 64 "$WARMUP" "$wdir/$SRV.tmpl" "$(dirname "$wdir")/$(conf "$wdir" warm)" 1500000000 >/dev/null
}

# measure ALG MODE WORKLOAD CONNS ROUND WLDIR: one measured run with RSS
# sampling, CPU accounting and the answer checks; appends a line to $RESULTS.
measure() {
	local alg=$1 mode=$2 wl=$3 c=$4 round=$5 wdir=$6
	local t0 t1 line rss hwm sampler api before after mix reqs non2xx
	api=$(conf "$wdir" api)
	: >"$TMP/rss"
	( while kill -0 "$SPID" 2>/dev/null; do
		awk '/^VmRSS/{print $2}' "/proc/$SPID/status" >>"$TMP/rss" 2>/dev/null || true
		sleep 0.25
	done ) &
	sampler=$!
	PIDS+=("$sampler")
	before="0 0 0"
	if [ "$SRV" = verdict ]; then before=$(verdict_counts "$api"); fi
	next_first
	t0=$(cpu_ticks "$SPID")
	line=$(wrk_run "$mode" "$c" "$DURATION" "$wdir/$SRV.tmpl" "$(dirname "$wdir")/$(conf "$wdir" pool)" "$FIRST")
	t1=$(cpu_ticks "$SPID")
	after="0 0 0"
	if [ "$SRV" = verdict ]; then after=$(verdict_counts "$api"); fi
	kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
	rss=$(sort -n "$TMP/rss" | tail -1)
	hwm=$(awk '/^VmHWM/{print $2}' "/proc/$SPID/status")
	reqs=${line##*requests=}; reqs=${reqs%% *}
	non2xx=${line##*non2xx=}; non2xx=${non2xx%% *}
	local cpu_us=$(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) / (reqs > 0 ? reqs : 1) ))
	# The answers. Verdict's counters must show the designed allow share;
	# a deny is a 200 everywhere but on /v1/check, where the share of 403s
	# must be the designed share of denies. Errors (Verdict: its error
	# decisions; OPA: non-2xx answers) are recorded as errors= (flagged in the
	# summary when more than one a connection) and tolerated up to a budget: wrk closes its
	# connections at the end of a run, and a request then in flight is
	# cancelled, which Verdict counts as an error (at most one a
	# connection); an overloaded machine can also push an evaluation past
	# its timeout. More than conns + 0.1% of the requests is not a glitch.
	mix=$(awk -v b="$before" -v a="$after" -v want="$(conf "$wdir" allow)" -v tol="$MIX_TOLERANCE" \
		-v srv="$SRV" -v api="$api" -v reqs="$reqs" -v non2xx="$non2xx" -v conns="$c" 'BEGIN {
		budget = conns + int(reqs / 1000)
		if (srv != "verdict") {
			if (non2xx > budget) { print "bad " non2xx " non-2xx answers"; exit }
			printf "allow_pct=- errors=%d\n", non2xx; exit
		}
		split(b, x, " "); split(a, y, " ")
		al = y[1] - x[1]; de = y[2] - x[2]; er = y[3] - x[3]; n = al + de + er
		if (n < 0.98 * reqs) { printf "bad %d decisions counted for %d requests\n", n, reqs; exit }
		if (er > budget) { print "bad " er " decisions were errors"; exit }
		share = al / n; d = share - want; if (d < 0) d = -d
		if (d > tol) { printf "bad allow share %.4f, designed %.4f\n", share, want; exit }
		if (api != "check" && non2xx > budget) { print "bad " non2xx " non-2xx answers"; exit }
		if (api == "check") { d = non2xx / (reqs > 0 ? reqs : 1) - (1 - want); if (d < 0) d = -d
			if (d > tol) { printf "bad %d of %d answers non-2xx, designed share of denies %.4f\n", non2xx, reqs, 1 - want; exit } }
		printf "allow_pct=%.1f errors=%d\n", 100 * share, er }')
	echo "$alg $mode $wl $c $round $SRV ${line#RESULT } cpu_us=$cpu_us rss_kb=${rss:-0} hwm_kb=$hwm $mix" | tee -a "$RESULTS" >&2
	case $mix in bad*) die "$SRV, workload $wl ($alg $mode $c conns): answers are not as designed: ${mix#bad }" ;; esac
}

RESULTS="$TMP/results.txt"
: >"$RESULTS"

# --- the runs ---------------------------------------------------------------
for alg in $ALGS; do
	dir="$TMP/${alg,,}"
	log "$alg: generating key, certificates, token pools (new-token pools: $NEW_POOL each) for: $WORKLOADS"
	"$TMP/gen" -out "$TMP" -alg "$alg" -n 1000 -new "$NEW_POOL" -workloads "$WORKLOADS"
	for round in $(seq 1 "$ROUNDS"); do
		# Alternate which server goes first, round by round.
		if [ $((round % 2)) = 1 ]; then order="verdict opa"; else order="opa verdict"; fi
		for mode in $MODES; do
			for wl in $WORKLOADS; do
				wdir="$dir/$wl"
				if [ "$(conf "$wdir" fresh)" = 1 ]; then
					# A fresh server per run: no token of the measured pool was ever
					# seen by it (warm-up and checks use other tokens), so every
					# measured request misses Verdict's token and decision caches
					# and OPA's io_jwt.
					for c in $CONNS; do
						for srv in $order; do
							log "$alg round $round $mode $wl $c: $srv"
							start_server "$srv" "$mode" "$wdir"
							warm_up "$mode" "$wdir"
							measure "$alg" "$mode" "$wl" "$c" "$round" "$wdir"
							stop_server
						done
					done
				else
					for srv in $order; do
						log "$alg round $round $mode $wl: $srv"
						start_server "$srv" "$mode" "$wdir"
						warm_up "$mode" "$wdir"
						for c in $CONNS; do measure "$alg" "$mode" "$wl" "$c" "$round" "$wdir"; done
						stop_server
					done
				fi
			done
		done
	done
done

# --- profiles ---------------------------------------------------------------
set +o pipefail # head closes pipes early below
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
	alg=${ALGS%% *}
	dir="$TMP/${alg,,}"
	for wl in $WORKLOADS; do
		wdir="$dir/$wl"
		for srv in verdict opa; do
			log "profile: $alg pinned $wl 64 conns: $srv"
			start_server "$srv" pinned "$wdir"
			warm_up pinned "$wdir"
			next_first
			wrk_run pinned 64 "$DURATION" "$wdir/$srv.tmpl" "$dir/$(conf "$wdir" pool)" "$FIRST" >"$TMP/prof-wrk" &
			wpid=$!; PIDS+=("$wpid")
			sleep 1
			perf record -F 999 -g -p "$SPID" -o "$TMP/perf.data" -- sleep $((DURATION - 2)) >/dev/null 2>&1 || true
			wait "$wpid" || true
			stop_server
			{
				echo "== perf: $srv, $alg, pinned, workload $wl, 64 conns: $(cat "$TMP/prof-wrk")"
				echo "-- self (flat), top 25"
				perf report -i "$TMP/perf.data" --stdio --no-children --sort symbol -g none 2>/dev/null |
					grep -E '^ +[0-9]' | head -25 | sed 's/  *$//' | cut -c1-130
				echo "-- inclusive (children), top 45"
				perf report -i "$TMP/perf.data" --stdio --children --sort symbol -g none 2>/dev/null |
					grep -E '^ +[0-9]' | head -45 | sed 's/  *$//' | cut -c1-150
			} | tee -a "$TMP/profiles.txt"
		done
	done
fi

# --- summary ----------------------------------------------------------------
echo
echo "== raw results"
cat "$RESULTS"
echo
echo "== medians over $ROUNDS rounds; ratios are Verdict/OPA within each round, then the median"
awk '
function kv(s, k,   i, a, n) { n = split(s, a, " "); for (i = 1; i <= n; i++) if (index(a[i], k "=") == 1) return substr(a[i], length(k) + 2); return "" }
function median(list,   a, n, i, j, t) {
	n = split(list, a, ","); for (i = 1; i <= n; i++) a[i] += 0
	for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
# (not `vals[k] = (k in vals) ? ...`: mawk creates vals[k] before testing it)
function add(k, v) { if (k in vals) vals[k] = vals[k] "," v; else vals[k] = v }
function addr(k, v) { if (k in ratios) ratios[k] = ratios[k] "," v; else ratios[k] = v }
{
	key = $1 " " $2 " " $3 " " $4; srv = $6; r = $5
	if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
	col = $1 " " $2 " " $4
	if (!(col in seenc)) { seenc[col] = 1; cols[++nc] = col }
	if (!($3 in seenw)) { seenw[$3] = 1; wls[++nw] = $3 }
	rps = kv($0, "rps"); p99 = kv($0, "p99_ms"); cpu = kv($0, "cpu_us")
	add(key SUBSEP srv SUBSEP "rps", rps); add(key SUBSEP srv SUBSEP "p50", kv($0, "p50_ms"))
	add(key SUBSEP srv SUBSEP "p99", p99); add(key SUBSEP srv SUBSEP "cpu", cpu)
	add(key SUBSEP srv SUBSEP "rss", kv($0, "rss_kb")); add(key SUBSEP srv SUBSEP "hwm", kv($0, "hwm_kb"))
	if (srv == "verdict") add(key SUBSEP "allow", kv($0, "allow_pct"))
	if (kv($0, "sockerr") > 0) bad[key] = 1
	if (kv($0, "errors") > $4) errs[key] = errs[key] " " srv "=" kv($0, "errors")
	if (kv($0, "wrapped") == 1 && ($3 == "new5k" || $3 == "newall")) wrapped[key] = 1
	R[key SUBSEP r SUBSEP srv SUBSEP "rps"] = rps; R[key SUBSEP r SUBSEP srv SUBSEP "p99"] = p99
	R[key SUBSEP r SUBSEP srv SUBSEP "cpu"] = cpu
	rounds[key] = rounds[key] " " r
}
END {
	printf "%-6s %-8s %-7s %5s | %9s %8s %8s %6s %7s %6s | %9s %8s %8s %6s %7s | %7s %7s %7s %s\n", "alg", "mode", "work", "conns",
		"V req/s", "V p50", "V p99", "V cpu", "V RSS", "allow", "O req/s", "O p50", "O p99", "O cpu", "O RSS", "x rps", "p99 V/O", "cpu V/O", "targets"
	for (i = 1; i <= nk; i++) {
		k = keys[i]; split(k, f, " ")
		rr = ""; pr = ""; cr = ""; split(rounds[k], rs, " "); delete done1
		for (j in rs) { r = rs[j]; if (r in done1) continue; done1[r] = 1
			vr = R[k SUBSEP r SUBSEP "verdict" SUBSEP "rps"]; or = R[k SUBSEP r SUBSEP "opa" SUBSEP "rps"]
			vp = R[k SUBSEP r SUBSEP "verdict" SUBSEP "p99"]; op = R[k SUBSEP r SUBSEP "opa" SUBSEP "p99"]
			vc = R[k SUBSEP r SUBSEP "verdict" SUBSEP "cpu"]; oc = R[k SUBSEP r SUBSEP "opa" SUBSEP "cpu"]
			if (vr != "" && or != "" && or > 0 && op > 0) {
				rr = rr (rr == "" ? "" : ",") vr / or; pr = pr (pr == "" ? "" : ",") vp / op
				if (oc > 0) cr = cr (cr == "" ? "" : ",") vc / oc
			}
		}
		xr = rr == "" ? 0 : median(rr); xp = pr == "" ? 0 : median(pr); xc = cr == "" ? 0 : median(cr)
		ratios[f[3] SUBSEP f[1] " " f[2] " " f[4]] = xr
		if (f[3] == "cached") t = sprintf("rps>=3x %s, p99<=1/3 %s", xr >= 3 ? "PASS" : "MISS", (xp > 0 && xp <= 1 / 3) ? "PASS" : "MISS")
		else if (f[3] == "new5k" || f[3] == "newall") t = sprintf("rps>=2x %s", xr >= 2 ? "PASS" : "MISS")
		else t = "-"
		if (k in bad) t = t " (socket errors!)"
		if (k in errs) t = t " (errors:" errs[k] ")"
		if (k in wrapped) t = t " (new pool wrapped: tokens repeated)"
		printf "%-6s %-8s %-7s %5s | %9.0f %6.2fms %6.2fms %4.0fus %5.0fMiB %5.1f%% | %9.0f %6.2fms %6.2fms %4.0fus %5.0fMiB | %6.2fx %7.3f %7.3f %s\n",
			f[1], f[2], f[3], f[4],
			median(vals[k SUBSEP "verdict" SUBSEP "rps"]), median(vals[k SUBSEP "verdict" SUBSEP "p50"]), median(vals[k SUBSEP "verdict" SUBSEP "p99"]),
			median(vals[k SUBSEP "verdict" SUBSEP "cpu"]), median(vals[k SUBSEP "verdict" SUBSEP "rss"]) / 1024, median(vals[k SUBSEP "allow"]),
			median(vals[k SUBSEP "opa" SUBSEP "rps"]), median(vals[k SUBSEP "opa" SUBSEP "p50"]), median(vals[k SUBSEP "opa" SUBSEP "p99"]),
			median(vals[k SUBSEP "opa" SUBSEP "cpu"]), median(vals[k SUBSEP "opa" SUBSEP "rss"]) / 1024, xr, xp, xc, t
	}
	print ""
	print "== Verdict/OPA req/s by workload (median of per-round ratios)"
	printf "%-8s", "workload"
	for (c = 1; c <= nc; c++) { h = cols[c]; gsub(" ", "/", h); printf " %20s", h }
	printf "\n"
	for (w = 1; w <= nw; w++) {
		printf "%-8s", wls[w]
		for (c = 1; c <= nc; c++) {
			if ((wls[w] SUBSEP cols[c]) in ratios) printf " %19.2fx", ratios[wls[w] SUBSEP cols[c]]
			else printf " %20s", "-"
		}
		printf "\n"
	}
}' "$RESULTS"
echo "(cpu = server CPU time (user+sys) per request; RSS = peak VmRSS sampled every 0.25 s during the measured run;"
echo " allow = Verdict's share of allows in the measured run, from its decision counters, as designed per workload)"
if [ -s "$TMP/profiles.txt" ]; then echo; echo "== profiles"; cat "$TMP/profiles.txt"; fi
