#!/usr/bin/env bash
# HTTP load comparison: Verdict's POST /v1/decide against OPA's own server
# (`opa run --server`) doing the same RBAC with io.jwt.decode_verify in Rego.
# Results and method: BENCHMARKS.md, "HTTP server vs `opa run --server` (wrk)".
#
# Usage (from anywhere in the repository; needs wrk, taskset, 2+ cores):
#   test/load/run.sh
# Knobs (environment):
#   ALGS="RS256 ES256"      signing algorithms (one issuer each)
#   ROUNDS=3                alternating rounds; the summary reports medians
#   DURATION=10             seconds per measured wrk run
#   WARMUP=3                seconds of warm-up (cached pool, 64 conns) after each server start
#   CONNS="8 64"            wrk connection counts
#   MODES="pinned unpinned" pinned: server `taskset -c 1` GOMAXPROCS=1, wrk `taskset -c 0 -t1`;
#                           unpinned: no taskset, default GOMAXPROCS, wrk -t2
#   VARIANTS="cached new"   cached: 1,000 tokens cycled; new: every token distinct
#   NEW_POOL=150000         size of the every-token-new pool (minting RS256 takes ~1 ms/token/core)
#   PROFILE=1               afterwards, perf-profile each server under pinned 64-conn load
#   MAX_SECONDS=5400        hard bound on the whole run
#   KEEP=1                  keep the temporary directory (tokens! delete it yourself)
#   OPA_BIN=path            use this OPA binary (must report version 1.22.3 ... as in go.mod)
# Nothing leaves loopback. Keys and tokens are generated into a temporary
# directory at run time and deleted on exit; every process started is stopped.
set -euo pipefail

ALGS=${ALGS:-"RS256 ES256"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CONNS=${CONNS:-"8 64"}
MODES=${MODES:-"pinned unpinned"}
VARIANTS=${VARIANTS:-"cached new"}
NEW_POOL=${NEW_POOL:-150000}
PROFILE=${PROFILE:-1}
MAX_SECONDS=${MAX_SECONDS:-5400}

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
# Watchdog: bound the run time.
( sleep "$MAX_SECONDS"; echo "run.sh: MAX_SECONDS=$MAX_SECONDS reached, stopping" >&2; kill -TERM $$ ) &
PIDS+=($!)

log() { echo "[$(date +%H:%M:%S)] $*" >&2; }

# --- binaries ---------------------------------------------------------------
OPA_VERSION=$(go list -m -f '{{.Version}}' github.com/open-policy-agent/opa)
log "building verdict; OPA $OPA_VERSION"
go build -o "$TMP/verdict" ./cmd/verdict
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

# start_server verdict|opa pinned|unpinned DIR: sets SPID, SPORT, SURL, SMODE.
start_server() {
	local srv=$1 mode=$2 dir=$3 pre=()
	SPORT=$(free_port)
	if [ "$mode" = pinned ]; then pre=(env GOMAXPROCS=1 taskset -c 1); fi
	if [ "$srv" = verdict ]; then
		(cd "$dir" && exec "${pre[@]}" "$TMP/verdict" serve --config verdict.yaml \
			--addr "127.0.0.1:$SPORT" --log-level error >"$TMP/$srv.log" 2>&1) &
		SURL="http://127.0.0.1:$SPORT/v1/decide"
		SMODE=verdict
	else
		(cd "$dir/opa" && exec "${pre[@]}" "$TMP/opa" run --server --addr "127.0.0.1:$SPORT" \
			--log-level error --skip-version-check --config-file config.yaml \
			policy.rego data.json >"$TMP/$srv.log" 2>&1) &
		SURL="http://127.0.0.1:$SPORT/v1/data/opa_authz/decision"
		SMODE=opa
	fi
	SPID=$!
	PIDS+=("$SPID")
	# Ready when it answers allow for a pool token (same check for both).
	local tok body i
	tok=$(head -1 "$dir/tokens.txt")
	if [ "$srv" = verdict ]; then body="{\"token\":\"$tok\",\"action\":\"orders:read\"}"
	else body="{\"input\":{\"token\":\"$tok\",\"action\":\"orders:read\"}}"; fi
	for i in $(seq 1 150); do
		if curl -s -m 2 "$SURL" -d "$body" 2>/dev/null | grep -q '"allow":true'; then return 0; fi
		kill -0 "$SPID" 2>/dev/null || break
		sleep 0.2
	done
	echo "run.sh: $srv did not answer allow; log:" >&2; cat "$TMP/$srv.log" >&2; exit 1
}

stop_server() {
	kill "$SPID" 2>/dev/null || true
	wait "$SPID" 2>/dev/null || true
}

# cpu_ticks PID: utime+stime of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk_run MODE CONNS DURATION TOKENFILE: prints the RESULT line.
wrk_run() {
	local mode=$1 c=$2 d=$3 file=$4 pre=() t=2
	if [ "$mode" = pinned ]; then pre=(taskset -c 0); t=1; fi
	"${pre[@]}" wrk -t"$t" -c"$c" -d"${d}s" --timeout 10s -s "$TMP/load.lua" "$SURL" -- \
		"$file" "$SMODE" "$t" | grep '^RESULT'
}

# measure ... : one measured run with RSS sampling and CPU accounting;
# appends a line to $RESULTS.
measure() {
	local alg=$1 mode=$2 variant=$3 c=$4 round=$5 srv=$6 file=$7
	local t0 t1 line rss hwm sampler
	: >"$TMP/rss"
	( while kill -0 "$SPID" 2>/dev/null; do
		awk '/^VmRSS/{print $2}' "/proc/$SPID/status" >>"$TMP/rss" 2>/dev/null || true
		sleep 0.25
	done ) &
	sampler=$!
	PIDS+=("$sampler")
	t0=$(cpu_ticks "$SPID")
	line=$(wrk_run "$mode" "$c" "$DURATION" "$file")
	t1=$(cpu_ticks "$SPID")
	kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true
	rss=$(sort -n "$TMP/rss" | tail -1)
	hwm=$(awk '/^VmHWM/{print $2}' "/proc/$SPID/status")
	local reqs
	reqs=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$line")
	local cpu_us=$(( (t1 - t0) * 1000000 / $(getconf CLK_TCK) / (reqs > 0 ? reqs : 1) ))
	echo "$alg $mode $variant $c $round $srv ${line#RESULT } cpu_us=$cpu_us rss_kb=${rss:-0} hwm_kb=$hwm" | tee -a "$RESULTS" >&2
}

RESULTS="$TMP/results.txt"
: >"$RESULTS"

# --- the runs ---------------------------------------------------------------
for alg in $ALGS; do
	dir="$TMP/$(tr 'A-Z' 'a-z' <<<"$alg")"
	npool=0
	case " $VARIANTS " in *" new "*) npool=$NEW_POOL ;; esac
	log "$alg: generating key, 1000 tokens and $npool new-pool tokens"
	go run ./test/load/gen -out "$TMP" -alg "$alg" -n 1000 -new "$npool"
	for round in $(seq 1 "$ROUNDS"); do
		# Alternate which server goes first, round by round.
		if [ $((round % 2)) = 1 ]; then order="verdict opa"; else order="opa verdict"; fi
		for mode in $MODES; do
			case " $VARIANTS " in *" cached "*)
				for srv in $order; do
					log "$alg round $round $mode cached: $srv"
					start_server "$srv" "$mode" "$dir"
					wrk_run "$mode" 64 "$WARMUP" "$dir/tokens.txt" >/dev/null
					for c in $CONNS; do measure "$alg" "$mode" cached "$c" "$round" "$srv" "$dir/tokens.txt"; done
					stop_server
				done ;;
			esac
			case " $VARIANTS " in *" new "*)
				# A fresh server per run: no new-pool token was ever seen by it
				# (warm-up uses the cached pool), so every measured request
				# misses Verdict's token and decision caches and OPA's io_jwt.
				for c in $CONNS; do
					for srv in $order; do
						log "$alg round $round $mode new $c: $srv"
						start_server "$srv" "$mode" "$dir"
						wrk_run "$mode" 64 "$WARMUP" "$dir/tokens.txt" >/dev/null
						measure "$alg" "$mode" new "$c" "$round" "$srv" "$dir/tokens-new.txt"
						stop_server
					done
				done ;;
			esac
		done
	done
done

# --- profiles ---------------------------------------------------------------
set +o pipefail # head closes pipes early below
if [ "$PROFILE" = 1 ] && command -v perf >/dev/null; then
	alg=${ALGS%% *}
	dir="$TMP/$(tr 'A-Z' 'a-z' <<<"$alg")"
	for variant in $VARIANTS; do
		file="$dir/tokens.txt"; [ "$variant" = new ] && file="$dir/tokens-new.txt"
		for srv in verdict opa; do
			log "profile: $alg pinned $variant 64 conns: $srv"
			start_server "$srv" pinned "$dir"
			wrk_run pinned 64 "$WARMUP" "$dir/tokens.txt" >/dev/null
			wrk_run pinned 64 "$DURATION" "$file" >"$TMP/prof-wrk" &
			wpid=$!; PIDS+=("$wpid")
			sleep 1
			perf record -F 999 -g -p "$SPID" -o "$TMP/perf.data" -- sleep $((DURATION - 2)) >/dev/null 2>&1 || true
			wait "$wpid" || true
			stop_server
			{
				echo "== perf: $srv, $alg, pinned, $variant pool, 64 conns: $(cat "$TMP/prof-wrk")"
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
{
	key = $1 " " $2 " " $3 " " $4; srv = $6; r = $5
	if (!(key in seen)) { seen[key] = 1; keys[++nk] = key }
	rps = kv($0, "rps"); p99 = kv($0, "p99_ms")
	add(key SUBSEP srv SUBSEP "rps", rps); add(key SUBSEP srv SUBSEP "p50", kv($0, "p50_ms"))
	add(key SUBSEP srv SUBSEP "p99", p99); add(key SUBSEP srv SUBSEP "cpu", kv($0, "cpu_us"))
	add(key SUBSEP srv SUBSEP "rss", kv($0, "rss_kb")); add(key SUBSEP srv SUBSEP "hwm", kv($0, "hwm_kb"))
	if (kv($0, "non2xx") + kv($0, "sockerr") > 0) bad[key] = 1
	if (kv($0, "wrapped") == 1 && $3 == "new") wrapped[key] = 1
	R[key SUBSEP r SUBSEP srv SUBSEP "rps"] = rps; R[key SUBSEP r SUBSEP srv SUBSEP "p99"] = p99
	rounds[key] = rounds[key] " " r
}
END {
	printf "%-6s %-8s %-6s %5s | %9s %8s %8s %6s %7s | %9s %8s %8s %6s %7s | %7s %7s %s\n", "alg", "mode", "pool", "conns",
		"V req/s", "V p50", "V p99", "V cpu", "V RSS", "O req/s", "O p50", "O p99", "O cpu", "O RSS", "x rps", "p99 V/O", "targets"
	for (i = 1; i <= nk; i++) {
		k = keys[i]; split(k, f, " ")
		rr = ""; pr = ""; split(rounds[k], rs, " "); delete done1
		for (j in rs) { r = rs[j]; if (r in done1) continue; done1[r] = 1
			vr = R[k SUBSEP r SUBSEP "verdict" SUBSEP "rps"]; or = R[k SUBSEP r SUBSEP "opa" SUBSEP "rps"]
			vp = R[k SUBSEP r SUBSEP "verdict" SUBSEP "p99"]; op = R[k SUBSEP r SUBSEP "opa" SUBSEP "p99"]
			if (vr != "" && or != "" && or > 0 && op > 0) { rr = rr (rr == "" ? "" : ",") vr / or; pr = pr (pr == "" ? "" : ",") vp / op }
		}
		xr = rr == "" ? 0 : median(rr); xp = pr == "" ? 0 : median(pr)
		if (f[3] == "cached") t = sprintf("rps>=3x %s, p99<=1/3 %s", xr >= 3 ? "PASS" : "MISS", (xp > 0 && xp <= 1 / 3) ? "PASS" : "MISS")
		else t = sprintf("rps>=2x %s", xr >= 2 ? "PASS" : "MISS")
		if (k in bad) t = t " (errors!)"
		if (k in wrapped) t = t " (new pool wrapped: tokens repeated)"
		printf "%-6s %-8s %-6s %5s | %9.0f %6.2fms %6.2fms %4.0fus %5.0fMiB | %9.0f %6.2fms %6.2fms %4.0fus %5.0fMiB | %6.2fx %7.3f %s\n",
			f[1], f[2], f[3], f[4],
			median(vals[k SUBSEP "verdict" SUBSEP "rps"]), median(vals[k SUBSEP "verdict" SUBSEP "p50"]), median(vals[k SUBSEP "verdict" SUBSEP "p99"]),
			median(vals[k SUBSEP "verdict" SUBSEP "cpu"]), median(vals[k SUBSEP "verdict" SUBSEP "rss"]) / 1024,
			median(vals[k SUBSEP "opa" SUBSEP "rps"]), median(vals[k SUBSEP "opa" SUBSEP "p50"]), median(vals[k SUBSEP "opa" SUBSEP "p99"]),
			median(vals[k SUBSEP "opa" SUBSEP "cpu"]), median(vals[k SUBSEP "opa" SUBSEP "rss"]) / 1024, xr, xp, t
	}
}' "$RESULTS"
echo "(cpu = server CPU time (user+sys) per request; RSS = peak VmRSS sampled every 0.25 s during the measured run)"
if [ -s "$TMP/profiles.txt" ]; then echo; echo "== profiles"; cat "$TMP/profiles.txt"; fi
