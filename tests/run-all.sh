#!/bin/bash
# SPDX-License-Identifier: ISC
# Everything `make test` runs: build and unit tests, integration tests, the
# same under AddressSanitizer/UndefinedBehaviorSanitizer, and a short run of
# every fuzz harness. Keeps going after a failure; the last line is
# "N passed, M failed", counting each unit-test binary, each integration test
# and the fuzz step as one item. Exits 1 if anything failed.
set -uo pipefail
cd "$(dirname "$(readlink -f "$0")")/.." || exit 1

passed=0
failed=0
failures=()
logdir=$(mktemp -d "${TMPDIR:-/tmp}/p2pvbd-run-all.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

banner() { printf '\n=== %s ===\n' "$*"; }
ok() {
	passed=$((passed + 1))
	echo "PASS $1"
}
ko() {
	failed=$((failed + 1))
	failures+=("$1")
	echo "FAIL $1"
}

# step NAME CMD...: run CMD with its output shown; one item.
step() {
	local name=$1
	shift
	banner "$name: $*"
	if "$@"; then ok "$name"; else ko "$name"; fi
}

# integration NAME CMD...: run an integration run.sh, with its output shown;
# each PASS/FAIL line it prints is one item (one failed item if it printed none).
integration() {
	local name=$1 log=$logdir/$1.log rc p f
	shift
	banner "$name: $*"
	"$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	p=$(grep -c '^PASS ' "$log")
	f=$(grep -c '^FAIL ' "$log")
	passed=$((passed + p))
	failed=$((failed + f))
	while read -r _ t; do failures+=("$name/$t"); done < <(grep '^FAIL ' "$log")
	if ((rc != 0 && f == 0)); then
		ko "$name (run.sh exited $rc)"
	fi
}

# (a) Normal build and unit tests. -k: a failing unit test must not stop
# the binary from being built for the integration tests.
step "unit (build)" make -k -j2 all unit

# (b) Integration tests against the normal build.
integration integration tests/integration/run.sh build/p2pvbd

# (c) The same under the sanitizers (the fast subset, which is slower here).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
step "unit (build-san)" make -k -j2 BUILD=build-san SAN=1 all unit
integration integration-san tests/integration/run.sh build-san/p2pvbd --fast
unset ASAN_OPTIONS UBSAN_OPTIONS

# (d) Every fuzz harness for a few seconds.
step "fuzz-smoke" env FUZZ_SECONDS="${FUZZ_SECONDS:-10}" make fuzz-smoke

banner summary
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "$passed passed, $failed failed"
((failed == 0))
