#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the plumbing of `make bench-vm` (tools/bench_vm.sh, tools/vm/bench_vm.py) without
# moving a VM: both print their help; with every case failing on purpose (BENCH_FAIL_CASE, a
# 1 GiB template with 1 MiB of data) the script prints a JSON failure line per case (also in
# bench-vm.json), still prints its summary line (no runs: null groups), and exits 1.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
repo=$(cd "$(dirname "$0")/../.." && pwd)

need_qemu_system
command -v qemu-img >/dev/null || fail "qemu-img missing (Debian package qemu-utils)"
expect_rc 0 help "$repo/tools/bench_vm.sh" --help
grep -q "QEMU's own" "$T/help.out" || fail "bench_vm.sh --help says nothing of QEMU's flow"
expect_rc 0 pyhelp python3 "$repo/tools/vm/bench_vm.py" --help
grep -q -- '--flow' "$T/pyhelp.out" || fail "bench_vm.py --help has no --flow"

mkdir -p "$T/out"
rc=0
VM_DIR=$T BENCH_OUTDIR=$T/out BENCH_FAIL_CASE='*' SIZE_GIB=1 DATA_MIB=1 RUNS=1 TWO_RUNS=1 \
	timeout 300 "$repo/tools/bench_vm.sh" "$P2PVBD" >"$T/run.out" 2>"$T/run.err" || rc=$?
((rc == 1)) || fail "bench_vm.sh with every case failing exited $rc, not 1: $(tail -n 3 "$T/run.err")"
for f in "$T/run.out" "$T/out/bench-vm.json"; do
	python3 - "$f" <<'PY' || fail "$f: $(cat "$f")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
failed = {l["case"] for l in lines if l.get("failed")}
assert failed == {"one-r1", "two-r1"}, failed
summary = [l for l in lines if l.get("bench") == "vm"]
assert len(summary) == 1 and summary[0]["one"]["qemu"] is None and summary[0]["runs"] == [], summary
PY
done
grep -q 'cases FAILED: one-r1 two-r1' "$T/run.err" || fail "no summary of the failed cases: $(tail -n 2 "$T/run.err")"
note "ok"
