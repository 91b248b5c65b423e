#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: issue 16 end to end, a VM as it runs today. The guest (tools/vm, TCG) boots from a
# **qcow2** file with no p2pvbd anywhere and writes records. While it runs, `seed --qmp --drive
# disk0` attaches to it (QEMU mirrors the drive into the seed: no restart); a destination QEMU
# starts with -incoming on `fetch -e` with `fetch --qmp --drive disk0`; `p2pvbd ctl SEED migrate`
# runs the switchover (sync, RAM with pause-before-switchover, freeze, continue); fetch then moves
# the running guest's drive onto OUT and exits 0 by itself. The guest goes on writing records at
# the destination, reads every record back (P2PVBD-VERIFY OK), and after QEMU quits OUT passes
# tools/vm/check-records.py: no write made before or after the migration and the move is lost.
# A second destination, `fetch --mirror` with no VM (on loopback: the lab has no sites yet), is
# in the swarm all along and ends with the source disk as the VM left it: its image equals
# `qemu-img convert -O raw` of the source qcow2 after the source QEMU quit. The source's qcow2
# stays a consistent qcow2 (qemu-img check) and the seed, stopped after that, exits 0.
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
truncate -s 32M "$T/disk.raw"
head -c 8M /dev/urandom | dd of="$T/disk.raw" conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$T/disk.raw" "$T/disk.qcow2" || fail "qemu-img convert failed"
rm -f "$T/disk.raw"
keygen "$T/src.key"
mkdir -p "$T/mig" "$T/seedstate"

# Run by migrate.py once the destination guest runs: fetch moves the drive onto OUT and exits
# by itself (within 60 s).
cat >"$T/after.sh" <<'SH'
pid=$1 log=$2 out=$3
i=0
while kill -0 "$pid" 2>/dev/null && [ "$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
	i=$((i + 1))
	[ $i -gt 600 ] && { echo "fetch did not exit within 60 s of the switchover"; exit 1; }
	sleep 0.1
done
grep -q "QEMU's drive disk0 now runs on $out" "$log" || { echo "fetch exited without moving the drive"; exit 1; }
echo "after-switchover: fetch moved disk0 onto $out and exited"
SH

note "migrating a guest on qcow2 (seed $SEED, $RECORDS records)"
# migrate.py starts the source on the qcow2, waits for 12 records, then waits (before-destination
# hook) for fetch's export, which this script starts once the seed attached and printed its URI.
bg_start "$T/migrate.log" timeout -k 5 300 python3 "$VM/migrate.py" \
	--src-disk "$T/disk.qcow2" --src-format qcow2 --src-extra-qmp "$T/mig/src-seed.qmp" \
	--dst-disk "nbd:unix:$T/dst.sock" --dst-extra-qmp "$T/mig/dst-pivot.qmp" \
	--kernel "$GUEST/vmlinuz" --initrd "$GUEST/initrd.gz" \
	--append "p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	--workdir "$T/mig" --min-records 12 --after-records 8 --hook-timeout 120 \
	--before-destination-cmd "i=0; while [ ! -S '$T/dst.sock' ]; do i=\$((i+1)); [ \$i -gt 1200 ] && exit 1; sleep 0.1; done" \
	--switchover-cmd "'$P2PVBD' ctl '$T/seed.ctl' migrate --timeout 120 \"\$P2PVBD_MIG_URI\"" \
	--after-switchover-cmd "sh '$T/after.sh' \"\$(cat '$T/fetch.pid')\" '$T/fetch.log' '$T/out.img'"
MIG_PID=$BG_PID

for ((i = 0; i < 600; i++)); do
	[[ -S $T/mig/src-seed.qmp ]] && break
	kill -0 "$MIG_PID" 2>/dev/null || fail "migrate.py exited early: $(tail -n 5 "$T/migrate.log")"
	sleep 0.1
done
[[ -S $T/mig/src-seed.qmp ]] || fail "the source QEMU made no QMP socket for the seed"
start_seed -k "$T/src.key" --qmp "$T/mig/src-seed.qmp" --drive disk0 --state-dir "$T/seedstate" \
	--ctl "$T/seed.ctl" --chunk-size 64K
note "seed attached to the running guest: $URI"
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress -e "unix:$T/dst.sock" --ctl "$T/fetch.ctl" \
	--qmp "$T/mig/dst-pivot.qmp" --drive disk0 "$URI" "$T/out.img"
FETCH_PID=$BG_PID
echo "$FETCH_PID" >"$T/fetch.pid"
bg_start "$T/mirror.log" "$P2PVBD" fetch --no-progress --mirror --ctl "$T/mirror.ctl" \
	"$URI" "$T/mirror.img"
MIRROR_PID=$BG_PID

wait_exit "$MIG_PID" 300 || fail "migrate.py did not finish: $(tail -n 5 "$T/migrate.log")"
cp "$T/mig/dst-console.log" "$T/dst-console.log" 2>/dev/null || true
((EXIT_STATUS == 0)) || fail "migrate.py exited $EXIT_STATUS: $(tail -n 8 "$T/migrate.log")"
grep -qx 'P2PVBD-MIGRATE OK' "$T/migrate.log" || fail "migrate.py did not print P2PVBD-MIGRATE OK"
grep -q '^after-switchover: fetch moved disk0' "$T/mig/hook-after-switchover.log" ||
	fail "the after-switchover hook did not see the move: $(cat "$T/mig/hook-after-switchover.log")"
grep -q '^P2PVBD-VERIFY OK ' "$T/mig/dst-console.log" ||
	fail "the guest did not print P2PVBD-VERIFY OK on the destination console"
grep -q 'migrated to .*downtime' "$T/seed.log" ||
	fail "the seed logged no completed migration: $(tail -n 5 "$T/seed.log")"

wait_exit "$FETCH_PID" 10 || fail "fetch is still running"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS: $(tail -n 5 "$T/fetch.log")"

read -r epoch next ondst atafter < <(python3 - "$T/mig/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(r["epoch"], r["next"], r["records_on_destination"], r["records_at_after_switchover"])
PY
) || fail "cannot read $T/mig/result.json"
((ondst >= atafter + 8)) ||
	fail "only $((ondst - atafter)) records written on the destination after the move"
note "guest stopped at epoch $epoch next $next; $ondst records on the destination, $((ondst - atafter)) after the move"

# Both QEMUs have quit: OUT holds every record; the source qcow2 is a consistent qcow2.
expect_rc 0 check "$VM/check-records.py" "$T/out.img" "$SEED" \
	--records "$RECORDS" --epoch "$epoch" --next "$next"
grep -q '^check-records: OK: ' "$T/check.out" || fail "check-records.py: $(cat "$T/check.out")"
expect_rc 0 qcheck qemu-img check "$T/disk.qcow2"
[[ $(qemu-img info --output=json "$T/disk.qcow2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["format"])') == qcow2 ]] ||
	fail "the source image is no longer qcow2"
# The mirror holds the final generation: the source disk as the VM left it at the freeze.
for ((i = 0; i < 300; i++)); do
	"$P2PVBD" status --json "$T/mirror.ctl" 2>/dev/null | grep -q '"complete":true,"final":true' && break
	kill -0 "$MIRROR_PID" 2>/dev/null || fail "the mirror exited: $(tail -n 5 "$T/mirror.log")"
	sleep 0.1
done
"$P2PVBD" status --json "$T/mirror.ctl" 2>/dev/null | grep -q '"complete":true,"final":true' ||
	fail "the mirror is not complete at the final generation: $(tail -n 5 "$T/mirror.log")"
qemu-img convert -f qcow2 -O raw "$T/disk.qcow2" "$T/src-final.raw" || fail "qemu-img convert failed"
cmp "$T/src-final.raw" "$T/mirror.img" || fail "the mirror differs from the source qcow2 at the freeze"
note "the mirror equals qemu-img convert of the source qcow2"
stop_pid "$MIRROR_PID"
kill -TERM "$SEED_PID"
wait_exit "$SEED_PID" 30 || fail "the seed did not stop on SIGTERM"
((EXIT_STATUS == 0)) || fail "the seed exited $EXIT_STATUS: $(tail -n 5 "$T/seed.log")"
note "ok"
