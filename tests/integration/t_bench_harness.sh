#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: a failing benchmark case cannot stop the others (tools/bench_lib.sh, tools/bench_all.sh). tools/bench.sh on a 4 MiB file with one case failing on purpose, with real failures (a b2sum and an nbdcopy that fail), and with one case hanging past its time limit: each failure prints its JSON failure line (also in the result file), the other case still runs and prints its result, nothing the failed case started is left running, and the exit status is 1. tools/bench_all.sh with every case failing: every benchmark still runs and reports, and the summary names all five.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
repo=$(cd "$(dirname "$0")/../.." && pwd)
for p in nbdkit nbdcopy b2sum python3; do
	command -v "$p" >/dev/null || fail "$p is missing (tools/install-deps.sh)"
done

# The benchmarks' work files and results stay in $T.
export TMPDIR=$T BENCH_OUTDIR=$T/out BENCH_MIB=4
mkdir -p "$BENCH_OUTDIR"

# bench NAME [ENV=VALUE...]: run tools/bench.sh with the environment given; stdout in
# $T/NAME.out, stderr in $T/NAME.err, its PID in BPID, its exit status in RC.
BPID=
bench() {
	local name=$1
	shift
	env "$@" "$repo/tools/bench.sh" "$P2PVBD" >"$T/$name.out" 2>"$T/$name.err" &
	BPID=$!
	PIDS+=("$BPID")
	wait_exit "$BPID" 240 || fail "$name: tools/bench.sh still running after 240 s"
	RC=$EXIT_STATUS
}

# check_lines FILE WHAT...: every WHAT is one line of FILE, as JSON: "ok:CASE" a result line of
# bench CASE, "failed:CASE:REGEX" a failure line of case CASE whose error matches REGEX.
check_lines() {
	python3 - "$@" <<'PY' || fail "$1: $(cat "$1")"
import json, re, sys
path, wants = sys.argv[1], sys.argv[2:]
lines = []
for text in open(path):
    text = text.strip()
    if text.startswith("{"):
        lines.append(json.loads(text))
for want in wants:
    kind, case = want.split(":")[:2]
    if kind == "ok":
        hit = [d for d in lines if d.get("bench") == case and "figure_s" in d and not d.get("failed")]
    else:
        rx = want.split(":", 2)[2]
        hit = [d for d in lines if d.get("bench") == "bench" and d.get("case") == case
               and d.get("failed") is True and re.search(rx, d.get("error", ""))]
    if len(hit) != 1:
        sys.exit("%s: expected one line for %s" % (path, want))
PY
}

# leftovers BPID: processes left behind by a run (anything with its work directory, or the
# sleeps of BENCH_FAIL_CASE=CASE:hang).
leftovers() {
	pgrep -af -- "$T/p2pvbd-bench\.|^sleep 3600\.$1\$" || true
}

# 1. One case fails on purpose: the other still runs; the exit status says a case failed.
bench forced BENCH_FAIL_CASE=hash
((RC == 1)) || fail "forced: tools/bench.sh exited $RC, expected 1: $(tail -5 "$T/forced.err")"
check_lines "$T/forced.out" "failed:hash:on purpose" ok:fetch
check_lines "$BENCH_OUTDIR/bench.json" "failed:hash:on purpose" ok:fetch
grep -q 'cases FAILED: hash$' "$T/forced.err" || fail "forced: no summary naming hash on stderr"

# 2. Real failures: a command that stops the case under set -e (b2sum), and fail (nbdcopy)
# after the case started nbdkit, which must not be left running.
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 3\n' >"$T/bin/b2sum"
printf '#!/bin/sh\nexit 1\n' >"$T/bin/nbdcopy"
chmod +x "$T/bin/b2sum" "$T/bin/nbdcopy"
bench real PATH="$T/bin:$PATH"
((RC == 1)) || fail "real: tools/bench.sh exited $RC, expected 1: $(tail -5 "$T/real.err")"
check_lines "$T/real.out" "failed:hash:b2sum.*exited with status 3" "failed:fetch:^nbdcopy failed$"
left=$(leftovers "$BPID")
[[ -z $left ]] || fail "real: left running: $left"

# 3. A case that hangs is stopped at its time limit, with what it started; the next case runs.
bench hang BENCH_FAIL_CASE=hash:hang BENCH_TIMEOUT=10
((RC == 1)) || fail "hang: tools/bench.sh exited $RC, expected 1: $(tail -5 "$T/hang.err")"
check_lines "$T/hang.out" "failed:hash:timed out after 10 s" ok:fetch
left=$(leftovers "$BPID")
[[ -z $left ]] || fail "hang: left running: $left"

# 4. make bench's driver: every benchmark runs although each fails (every case on purpose, or
# its setup for want of something here), each says so in JSON, and the summary names them all.
rc=0
env BENCH_FAIL_CASE='*' MIB=1 LIVE_DIR="$T" BENCH_OUT="$T/out/tracker.json" \
	timeout 240 "$repo/tools/bench_all.sh" "$(dirname "$P2PVBD")" >"$T/all.out" 2>"$T/all.err" ||
	rc=$?
((rc == 1)) || fail "all: tools/bench_all.sh exited $rc, expected 1: $(tail -5 "$T/all.err")"
python3 - "$T/all.out" <<'PY' || fail "all: $(cat "$T/all.out")"
import json, sys
failed = set()
for text in open(sys.argv[1]):
    text = text.strip()
    if text.startswith("{"):
        d = json.loads(text)
        if d.get("failed") is True:
            failed.add(d["bench"])
want = {"bench", "bench-fault", "bench-live", "bench-swarm", "bench-tracker"}
if failed != want:
    sys.exit("benchmarks with a failure line: %s, expected %s" % (sorted(failed), sorted(want)))
PY
tail -n 1 "$T/all.err" | grep -q '5 of 5 benchmarks FAILED: bench (hash fetch), bench-fault' ||
	fail "all: the summary line does not name every benchmark: $(tail -n 1 "$T/all.err")"
note "ok"
