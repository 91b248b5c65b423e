#!/bin/bash
# SPDX-License-Identifier: ISC
# Run the integration tests: tests/integration/run.sh BINARY [--fast]
#
# Runs every tests/integration/t_*.sh (with --fast only those containing the
# line "# fast"), each bounded by a timeout, prints "PASS name" or
# "FAIL name" (plus the tail of its log), and ends with "N passed, M failed".
# Exits 1 if any test failed.
set -euo pipefail

usage() {
	echo "usage: $0 PATH-TO-p2pvbd [--fast]" >&2
	exit 2
}

bin=
fast=
for a in "$@"; do
	case $a in
	--fast) fast=1 ;;
	-h | --help) usage ;;
	-*) usage ;;
	*)
		[[ -z $bin ]] || usage
		bin=$a
		;;
	esac
done
[[ -n $bin ]] || usage
[[ $bin == /* ]] || bin=$PWD/$bin
if [[ ! -x $bin ]]; then
	echo "$0: binary not found or not executable: $bin" >&2
	echo "0 passed, 1 failed"
	exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
# Per-test limit in seconds; a test that hangs is killed with its children.
TEST_TIMEOUT=${TEST_TIMEOUT:-300}

logdir=$(mktemp -d "${TMPDIR:-/tmp}/p2pvbd-itest-logs.XXXXXX")
trap 'rm -rf "$logdir"' EXIT

passed=0
failed=0
failed_names=()
shopt -s nullglob
for t in "$here"/t_*.sh; do
	name=$(basename "$t" .sh)
	if [[ -n $fast ]] && ! grep -qx '# fast' "$t"; then
		continue
	fi
	log=$logdir/$name.log
	start=$(date +%s)
	rc=0
	timeout -k 10 "$TEST_TIMEOUT" bash "$t" "$bin" </dev/null >"$log" 2>&1 || rc=$?
	secs=$(($(date +%s) - start))
	if ((rc == 0)); then
		echo "PASS $name"
		passed=$((passed + 1))
	else
		echo "FAIL $name"
		if ((rc == 124)); then
			echo "    | (timed out after ${TEST_TIMEOUT}s; last 30 lines of its log:)"
		else
			echo "    | (exit $rc after ${secs}s; last 30 lines of its log:)"
		fi
		sed 's/^/    | /' < <(tail -n 30 "$log")
		failed=$((failed + 1))
		failed_names+=("$name")
	fi
done

if ((passed + failed == 0)); then
	echo "$0: no tests found in $here" >&2
	echo "0 passed, 1 failed"
	exit 1
fi
echo "$passed passed, $failed failed"
((failed == 0))
