#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: the destination VM ends on its own disk. A real VM (tools/vm/build-guest.sh, under TCG)
# is live-migrated as in t_vm_migrate_live.sh (source QEMU on `seed -e`, destination QEMU on
# `fetch -e` with -incoming, tools/vm/migrate.py, freeze at pre-switchover), with
# `fetch --qmp DST-QMP --drive disk0` (a second QMP socket of the destination QEMU). Once the
# migration is done and OUT is complete at the final generation, fetch moves the running VM's
# drive from its NBD export onto OUT and exits 0 by itself; then QEMU has no nbd node left and
# its drive reads OUT. The guest goes on writing records after the move, then reads every
# record back (P2PVBD-VERIFY OK), and after QEMU quits OUT passes tools/vm/check-records.py
# with the guest's final state: no write made before the move is lost, and those made after it
# are in OUT.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system

GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

SEED=$((RANDOM * 32768 + RANDOM))
RECORDS=32
truncate -s 32M "$T/disk.img"
head -c 8M /dev/urandom | dd of="$T/disk.img" conv=notrunc status=none
keygen "$T/src.key"
mkdir -p "$T/mig"

start_seed -k "$T/src.key" -e "unix:$T/src.sock" --ctl "$T/seed.ctl" --chunk-size 64K \
	"$T/disk.img"
for ((i = 0; i < 100; i++)); do
	[[ -S $T/src.sock ]] && break
	sleep 0.1
done
[[ -S $T/src.sock ]] || fail "seed -e made no export socket"
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress -e "unix:$T/dst.sock" --ctl "$T/fetch.ctl" \
	--qmp "$T/mig/dst-pivot.qmp" --drive disk0 "$URI" "$T/out.img"
FETCH_PID=$BG_PID
for ((i = 0; i < 300; i++)); do
	[[ -S $T/dst.sock ]] && break
	kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited before exporting: $(tail -n 5 "$T/fetch.log")"
	sleep 0.1
done
[[ -S $T/dst.sock ]] || fail "fetch -e made no export socket within 30 s"

# Run by migrate.py once the destination guest runs: fetch moves the drive and exits by itself
# (within 60 s), and QEMU then has no nbd node and reads OUT.
cat >"$T/after.py" <<'PY'
import json, os, subprocess, sys, time
pid, log, qmpcmd, sock, out = sys.argv[1:6]
def gone():
    try:
        with open("/proc/%s/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"  # exited, not reaped yet
    except FileNotFoundError:
        return True
for _ in range(600):
    if gone():
        break
    time.sleep(0.1)
else:
    sys.exit("fetch did not exit within 60 s of the switchover")
if "QEMU's drive disk0 now runs on %s" % out not in open(log).read():
    sys.exit("fetch exited without moving the drive")
def qmp(cmd):
    r = subprocess.run([sys.executable, qmpcmd, sock, cmd], capture_output=True, text=True,
                       timeout=60)
    if r.returncode != 0:
        sys.exit("qmp-cmd.py %s: %s" % (cmd, r.stderr))
    return json.loads(r.stdout)
nodes, block = qmp("query-named-block-nodes"), qmp("query-block")
nbd = [n["node-name"] for n in nodes if n["drv"] == "nbd"]
if nbd:
    sys.exit("nbd nodes left after the move: %s" % nbd)
d = [b for b in block if b.get("device") == "disk0"][0]["inserted"]
if d["file"] != out:
    sys.exit("disk0 reads %s, not %s" % (d["file"], out))
print("after-switchover: fetch exited, disk0 on %s, no nbd node" % out)
PY

note "migrating (seed $SEED, $RECORDS records)"
rc=0
timeout -k 5 200 python3 "$VM/migrate.py" \
	--src-disk "nbd:unix:$T/src.sock" --dst-disk "nbd:unix:$T/dst.sock" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	--workdir "$T/mig" --min-records 12 --after-records 8 \
	--dst-extra-qmp "$T/mig/dst-pivot.qmp" \
	--wait-sync-cmd "'$VM/sync-check.sh' --p2pvbd '$P2PVBD' '$T/seed.ctl' '$T/fetch.ctl'" \
	--sync-interval 0.2 \
	--freeze-cmd "'$P2PVBD' ctl '$T/seed.ctl' freeze" \
	--resume-cmd "'$P2PVBD' ctl '$T/seed.ctl' thaw" \
	--after-switchover-cmd "python3 '$T/after.py' $FETCH_PID '$T/fetch.log' '$VM/qmp-cmd.py' \
'$T/mig/dst-pivot.qmp' '$T/out.img'" \
	>"$T/migrate.log" 2>&1 || rc=$?
cp "$T/mig/dst-console.log" "$T/dst-console.log" 2>/dev/null || true
cp "$T/mig/hook-after-switchover.log" "$T/after.log" 2>/dev/null || true
((rc == 0)) || fail "migrate.py exited $rc: $(tail -n 5 "$T/migrate.log")"
grep -qx 'P2PVBD-MIGRATE OK' "$T/migrate.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^after-switchover: fetch exited' "$T/mig/hook-after-switchover.log" ||
	fail "the after-switchover hook did not check the move"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK on the destination console"

wait_exit "$FETCH_PID" 10 || fail "fetch is still running"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -n 5 "$T/fetch.log")"
grep -q 'generation [0-9]* is final: the source froze' "$T/fetch.log" ||
	fail "the destination logged no final generation"
# The move waited for OUT at the final generation; its receipt reached the source first.
gen=$(sed -n 's/.*generation \([0-9]*\) is final: the source froze.*/\1/p' "$T/fetch.log" | tail -n 1)
grep -q "holds generation $gen complete" "$T/seed.log" ||
	fail "no receipt for the final generation $gen at the source: $(tail -n 5 "$T/seed.log")"
grep -q "moving QEMU's drive disk0 .*: the mirror way" "$T/fetch.log" ||
	fail "the move did not take the mirror way (-drive's nodes)"

read -r epoch next ondst atafter < <(python3 - "$T/mig/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["epoch"], r["next"], r["records_on_destination"], r["records_at_after_switchover"])
PY
) || fail "cannot read $T/mig/result.json"
((ondst >= atafter + 8)) ||
	fail "only $((ondst - atafter)) records written on the destination after the move"
note "guest stopped at epoch $epoch next $next; $ondst records on the destination, $((ondst - atafter)) after the move"

# QEMU has quit (the guest powered off): OUT holds every record, before and after the move.
stop_pid "$SEED_PID"
expect_rc 0 check "$VM/check-records.py" "$T/out.img" "$SEED" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check.out" || fail "check-records.py: $(cat "$T/check.out")"
note "ok"
