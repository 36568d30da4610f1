#!/usr/bin/env bash
# Go benchmarks of the working tree against another revision, in the same
# run: both test binaries are built, then run alternately, one core each,
# ROUNDS times (the order flips every round, so neither side always runs
# first), and benchstat compares the two (medians: the machine is noisy).
# Each binary runs in its own revision's package directory, with its own
# benchmark code and testdata: what is compared is what each revision shipped.
#
# Usage (from anywhere in the repository):
#   test/benchcmp.sh REV [BENCH-REGEXP] [PACKAGE]
#   test/benchcmp.sh b658233 'BenchmarkDecide/^first_time$' ./authz
# Knobs (environment): ROUNDS=10, BENCHTIME=1s, OUT=dir to keep the raw
# results in (default: a temporary directory, removed at exit).
set -euo pipefail

rev=${1:?usage: test/benchcmp.sh REV [BENCH-REGEXP] [PACKAGE]}
bench=${2:-BenchmarkDecide}
pkg=${3:-./authz}
rounds=${ROUNDS:-10}
benchtime=${BENCHTIME:-1s}
benchstat=golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

root=$(git rev-parse --show-toplevel)
work=$(mktemp -d)
out=${OUT:-$work}
mkdir -p "$out"
cleanup() {
	git -C "$root" worktree remove --force "$work/base" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

git -C "$root" worktree add --detach "$work/base" "$rev" >/dev/null 2>&1
(cd "$work/base" && go test -c -o "$work/base.test" "$pkg")
(cd "$root" && go test -c -o "$work/head.test" "$pkg")
: >"$out/base.txt"
: >"$out/head.txt"

run() { # side dir
	(cd "$2/$pkg" && "$work/$1.test" -test.run '^$' -test.bench "$bench" \
		-test.benchmem -test.cpu 1 -test.benchtime "$benchtime" >>"$out/$1.txt")
}
for i in $(seq "$rounds"); do
	if ((i % 2)); then
		run base "$work/base"
		run head "$root"
	else
		run head "$root"
		run base "$work/base"
	fi
	echo "round $i of $rounds done" >&2
done
go run "$benchstat" "$rev=$out/base.txt" "working tree=$out/head.txt"
