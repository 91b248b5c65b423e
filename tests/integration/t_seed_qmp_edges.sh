#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed --qmp's edges, against a QEMU with no guest (-machine none: quick) holding a
# writable and a read-only raw drive:
#  - usage errors (no --drive, an IMAGE too, -e, --write-through, TLS) and a QMP socket or drive
#    that is not there: one clear line, exit 2 or 1, nothing left in QEMU;
#  - a read-only drive is final at once, and a fetch of it equals the file;
#  - a mirror job cancelled from outside stops the seed (exit 1, "not by us") and it deletes its
#    node: nothing of ours is left in QEMU;
#  - a seed killed with SIGKILL leaves its job and node; the next seed of that drive removes
#    them, says so, and serves the drive (a second seed of it is refused at once); a write to it (HMP qemu-io, as a guest's) reaches the
#    seed and a fetch equals the file;
#  - frozen with the VM running, a write fails the job: the seed says the final generation lacks
#    it, exits 1 and leaves nothing in QEMU.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

need_qemu_system

keygen "$T/k"
head -c 6M /dev/urandom >"$T/data.raw"
truncate -s 8M "$T/data.raw"
head -c 3M /dev/urandom >"$T/ro.raw"

# ---- usage errors: no QEMU needed.
expect_rc 2 u1 "$P2PVBD" seed -k "$T/k" --qmp "$T/none.qmp"
grep -q -- '--qmp SOCKET needs --drive DRIVE' "$T/u1.err" || fail "no --drive: $(cat "$T/u1.err")"
expect_rc 2 u2 "$P2PVBD" seed -k "$T/k" --qmp "$T/none.qmp" --drive d0 "$T/data.raw"
grep -q -- '--qmp takes no IMAGE' "$T/u2.err" || fail "an IMAGE too: $(cat "$T/u2.err")"
expect_rc 2 u3 "$P2PVBD" seed -k "$T/k" --qmp "$T/none.qmp" --drive d0 -e "unix:$T/x.sock"
grep -q -- '--drive and -e exclude each other' "$T/u3.err" || fail "-e too: $(cat "$T/u3.err")"
expect_rc 2 u4 "$P2PVBD" seed -k "$T/k" --qmp "$T/none.qmp" --drive d0 --write-through
grep -q -- '--write-through does not go with --qmp' "$T/u4.err" || fail "--write-through: $(cat "$T/u4.err")"
expect_rc 2 u5 "$P2PVBD" seed -k "$T/k" --qmp "$T/none.qmp" --drive d0 --tls=off
grep -q -- '--tls options are for -e' "$T/u5.err" || fail "--tls: $(cat "$T/u5.err")"
expect_rc 1 u6 "$P2PVBD" seed -k "$T/k" -l 127.0.0.1:0 --qmp "$T/none.qmp" --drive d0 --state-dir "$T/st"
grep -q 'cannot connect to QMP socket' "$T/u6.err" || fail "no QEMU: $(cat "$T/u6.err")"

bg_start "$T/qemu.log" qemu-system-x86_64 -machine none -nodefaults -display none \
	-qmp "unix:$T/seed.qmp,server=on,wait=off" -qmp "unix:$T/test.qmp,server=on,wait=off" \
	-drive "if=none,id=d0,format=raw,file=$T/data.raw" \
	-drive "if=none,id=ro0,format=raw,readonly=on,file=$T/ro.raw"
QEMU_PID=$BG_PID
for ((i = 0; i < 100; i++)); do
	[[ -S $T/seed.qmp && -S $T/test.qmp ]] && break
	sleep 0.1
done
[[ -S $T/test.qmp ]] || fail "QEMU made no QMP socket: $(cat "$T/qemu.log")"
# qmp_ours ACTION: one QMP session on the test's socket. "count": how many jobs and nodes of ours
# ("J N"); "cancel": cancel our job (force), as an operator would by hand; "hmp CMD": an HMP
# command (qemu-io on drive d0 writes as a guest would, through the mirror).
qmp_ours() {
	python3 - "$T/test.qmp" "$@" <<'PY'
import json, socket, sys
f = socket.socket(socket.AF_UNIX)
f.settimeout(30)
f.connect(sys.argv[1])
f = f.makefile("rwb")
f.readline()
def run(cmd, args=None):
    req = {"execute": cmd}
    if args is not None:
        req["arguments"] = args
    f.write(json.dumps(req).encode() + b"\n")
    f.flush()
    while True:
        m = json.loads(f.readline())
        if "error" in m:
            sys.exit("%s: %s" % (cmd, m["error"]))
        if "return" in m:
            return m["return"]
run("qmp_capabilities")
jobs = [j["device"] for j in run("query-block-jobs") if j["device"].startswith("p2pvbd-")]
if sys.argv[2] == "hmp":
    print(run("human-monitor-command", {"command-line": sys.argv[3]}), end="")
    sys.exit()
if sys.argv[2] == "cancel":
    if len(jobs) != 1:
        sys.exit("not one job of ours: %s" % jobs)
    run("block-job-cancel", {"device": jobs[0], "force": True})
else:
    nodes = [n["node-name"] for n in run("query-named-block-nodes", {"flat": True})
             if n["node-name"].startswith("p2pvbd-")]
    print(len(jobs), len(nodes))
PY
}
ours() { qmp_ours count || fail "QMP queries failed"; }
[[ $(ours) == "0 0" ]] || fail "something of ours in QEMU before any seed attached"

expect_rc 1 u7 "$P2PVBD" seed -k "$T/k" -l 127.0.0.1:0 --qmp "$T/seed.qmp" --drive nope --state-dir "$T/st"
grep -q 'QEMU has no drive nope.*\[drive d0, ' "$T/u7.err" || fail "unknown drive: $(cat "$T/u7.err")"
[[ $(ours) == "0 0" ]] || fail "a refused drive left something in QEMU"

stop_seed() {
	kill -TERM "$SEED_PID"
	wait_exit "$SEED_PID" 30 || fail "$1: the seed did not stop within 30 s"
	((EXIT_STATUS == 0)) || fail "$1: the seed exited $EXIT_STATUS: $(tail -n 3 "$T/seed.log")"
	[[ $(ours) == "0 0" ]] || fail "$1: the seed left something in QEMU: $(ours)"
}

# ---- a read-only drive: final at once.
start_seed -k "$T/k" --qmp "$T/seed.qmp" --drive ro0 --state-dir "$T/st" --ctl "$T/seed.ctl"
grep -q 'frozen: generation [0-9]* is final' "$T/seed.log" || fail "a read-only drive is not final at once"
expect_rc 0 fetch_ro "$P2PVBD" fetch --no-progress "$URI" "$T/ro.out"
cmp "$T/ro.raw" "$T/ro.out" || fail "the read-only drive fetched differs from its file"
stop_seed "read-only drive"

# ---- the job cancelled from outside: the seed stops with an error and deletes its node.
mv "$T/seed.log" "$T/seed-ro.log"
start_seed -k "$T/k" --qmp "$T/seed.qmp" --drive d0 --state-dir "$T/st" --ctl "$T/seed.ctl"
[[ $(ours) == "1 1" ]] || fail "attached: expected our job and node, found $(ours)"
qmp_ours cancel || fail "block-job-cancel failed"
wait_exit "$SEED_PID" 30 || fail "the seed did not stop within 30 s of its job's end"
((EXIT_STATUS == 1)) || fail "the seed exited $EXIT_STATUS when its job ended, not 1"
grep -q 'the mirror job was cancelled (not by us); stopping' "$T/seed.log" ||
	fail "the seed did not say why it stopped: $(tail -n 3 "$T/seed.log")"
[[ $(ours) == "0 0" ]] || fail "the seed whose job was cancelled left $(ours) (jobs, nodes)"

# ---- SIGKILL leaves the job and node; the next seed of the drive removes them.
mv "$T/seed.log" "$T/seed-cancel.log"
start_seed -k "$T/k" --qmp "$T/seed.qmp" --drive d0 --state-dir "$T/st" --ctl "$T/seed.ctl"
kill -KILL "$SEED_PID"
wait_exit "$SEED_PID" 10 || fail "SIGKILL did not stop the seed"
[[ $(ours) == "1 1" ]] || fail "after SIGKILL: expected the job and node left, found $(ours)"
mv "$T/seed.log" "$T/seed-killed.log"
start_seed -k "$T/k" --qmp "$T/seed.qmp" --drive d0 --state-dir "$T/st" --ctl "$T/seed.ctl"
grep -q 'an earlier seed of this drive did not detach (killed?): removed its mirror job and its nbd node p2pvbd-' \
	"$T/seed.log" || fail "the next seed did not remove what the killed one left: $(head -n 3 "$T/seed.log")"
[[ $(ours) == "1 1" ]] || fail "restarted: expected one job and one node, found $(ours)"
# A second seed of the same drive stops at the scratch copy's lock, before it waits for QMP.
expect_rc 1 second "$P2PVBD" seed -k "$T/k" -l 127.0.0.1:0 --qmp "$T/seed.qmp" --drive d0 --state-dir "$T/st" --ctl "$T/second.ctl"
grep -q 'is another seed attached to drive d0' "$T/second.err" || fail "a second seed: $(cat "$T/second.err")"
# A write to the drive (as a guest's) reaches the seed: in the fetched image.
out=$(qmp_ours hmp 'qemu-io d0 "write -P 0x5c 1M 100k"') || fail "HMP qemu-io failed"
[[ -z $out || $out == *wrote* ]] || fail "qemu-io: $out"
expect_rc 0 freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
expect_rc 0 fetch_d0 "$P2PVBD" fetch --no-progress "$URI" "$T/d0.out"
cmp "$T/data.raw" "$T/d0.out" || fail "the drive fetched differs from its file"
cmp -s -i $((1024 * 1024)):0 -n $((100 * 1024)) "$T/d0.out" <(head -c $((100 * 1024)) /dev/zero | tr '\0' '\134') ||
	fail "the write through QEMU is not in the fetched image"
# Frozen, a write of the still running VM fails the job: the seed says the final generation
# lacks it, stops (exit 1) and leaves nothing in QEMU.
out=$(qmp_ours hmp 'qemu-io d0 "write -P 0x5d 2M 4k"') || fail "HMP qemu-io failed"
wait_exit "$SEED_PID" 30 || fail "a write after the freeze did not stop the seed within 30 s"
((EXIT_STATUS == 1)) || fail "the seed exited $EXIT_STATUS after a write it missed, not 1"
grep -q 'the VM wrote after the freeze (it was not stopped): that write is not in the final generation' \
	"$T/seed.log" || fail "the seed did not say the final generation lacks a write: $(tail -n 3 "$T/seed.log")"
[[ $(ours) == "0 0" ]] || fail "after the job failed: $(ours) (jobs, nodes) left"
kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited"
note "ok"
