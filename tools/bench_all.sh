#!/bin/bash
# SPDX-License-Identifier: ISC
# Every benchmark, one after the other (make bench): tools/bench_all.sh BUILD-DIR
#
# Runs tools/bench.sh, bench_fault.sh, bench_live.sh, bench_swarm.sh and bench_tracker.sh
# with the programs in BUILD-DIR, each even when an earlier one failed. Each benchmark's
# output passes through unchanged; a failing case prints its JSON failure line itself
# (tools/bench_lib.sh). A benchmark that fails outside its cases (its setup: a missing tool,
# no space) gets one line here:
#   {"bench": NAME, "case": null, "failed": true, "error": "..."}
# At the end one line on stderr says which benchmarks and cases failed; the exit status is
# 1 if any did. BENCH_ONLY="bench bench-live" runs only the benchmarks named (in this order).
set -euo pipefail

if (($# != 1)) || [[ $1 == -* ]]; then
	echo "usage: $0 BUILD-DIR (the directory with p2pvbd, p2pvbd-tracker and annload)" >&2
	exit 2
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
B=$1

ALL="bench bench-fault bench-live bench-swarm bench-tracker"
# run NAME: run one benchmark.
run() {
	case $1 in
	bench) "$repo/tools/bench.sh" "$B/p2pvbd" ;;
	bench-fault) "$repo/tools/bench_fault.sh" "$B/p2pvbd" ;;
	bench-live) "$repo/tools/bench_live.sh" "$B/p2pvbd" ;;
	bench-swarm) "$repo/tools/bench_swarm.sh" "$B/p2pvbd" "$B/p2pvbd-tracker" ;;
	bench-tracker) "$repo/tools/bench_tracker.sh" "$B/p2pvbd-tracker" "$B/annload" ;;
	esac
}
read -ra NAMES <<<"${BENCH_ONLY:-$ALL}"
for name in "${NAMES[@]}"; do
	[[ " $ALL " == *" $name "* ]] || {
		echo "bench: unknown benchmark '$name' in BENCH_ONLY ($ALL)" >&2
		exit 2
	}
done

W=$(mktemp -d "${TMPDIR:-/tmp}/p2pvbd-bench-all.XXXXXX")
trap 'rm -rf "$W"' EXIT
# A benchmark stops its own cases on INT and TERM; then stop here too, not run the next one.
trap 'exit 130' INT
trap 'exit 143' TERM

failed=()
for name in "${NAMES[@]}"; do
	echo "bench: running $name" >&2
	rc=0
	run "$name" | tee "$W/$name.out" || rc=$?
	((rc != 0)) || continue
	if ((rc == 130 || rc == 143)); then
		echo "bench: $name was interrupted; not running the rest" >&2
		exit "$rc"
	fi
	# The cases that printed a failure line; none: it failed outside its cases.
	cases=$(python3 - "$W/$name.out" <<'PY'
import json, sys
names = []
for line in open(sys.argv[1], errors="replace"):
    line = line.strip()
    if not line.startswith("{"):
        continue
    try:
        d = json.loads(line)
    except ValueError:
        continue
    if isinstance(d, dict) and d.get("failed") is True and d.get("case"):
        names.append(d["case"])
print(" ".join(names))
PY
	)
	if [[ -z $cases ]]; then
		cases="exit status $rc"
		python3 -c 'import json, sys
print(json.dumps({"bench": sys.argv[1], "case": None, "failed": True,
                  "error": "exited with status %s outside its cases" % sys.argv[2]}))' "$name" "$rc"
	fi
	failed+=("$name ($cases)")
done

if ((${#failed[@]} > 0)); then
	summary=$(printf '%s, ' "${failed[@]}")
	echo "bench: ${#failed[@]} of ${#NAMES[@]} benchmarks FAILED: ${summary%, }" >&2
	exit 1
fi
echo "bench: all ${#NAMES[@]} benchmarks ran; no case failed" >&2
