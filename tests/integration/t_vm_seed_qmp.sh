#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: `seed --qmp SOCKET --drive DRIVE` seeds the disk of a VM that runs as VMs run today
# (the tiny TCG guest of tools/vm/, booted from a qcow2 file, no p2pvbd anywhere) without a
# restart, while the guest writes records:
#  1. the seed attaches (QEMU mirrors the drive into it, write-blocking), prints its URI once the
#     copy is READY, and a `p2pvbd fetch` of that URI, after QMP `stop` and `ctl freeze`, ends
#     with exactly `qemu-img convert -O raw` of the qcow2 at the freeze; thawed and `cont`, the
#     guest writes on through the seed;
#  2. stopped, the seed detaches: the guest keeps writing, query-block-jobs is empty and the nbd
#     node is gone (query-named-block-nodes);
#  3. restarted with the same --volume-id and state, it goes on above every generation published
#     before; with --max-dirty-rate 1 (a byte a second) the guest's writes stop at the seed
#     (every write is acknowledged to the guest only once the seed has it), and detaching lets
#     them go on;
#  4. attached again, the guest stops writing, reads every record back (P2PVBD-VERIFY OK) and
#     powers off: the seed says QEMU exited and keeps serving, then stops cleanly; `qemu-img
#     check` of the qcow2 passes.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)

need_qemu_system
command -v qemu-img >/dev/null || fail "qemu-img missing (Debian package qemu-utils)"

GUEST=$(dirname "$P2PVBD")/vm
"$VM/build-guest.sh" "$GUEST" >"$T/build-guest.log" 2>&1 ||
	fail "tools/vm/build-guest.sh $GUEST failed"

SEED=$((RANDOM * 32768 + RANDOM))
RECORDS=48
VOLID=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
qemu-img create -q -f qcow2 "$T/disk.qcow2" 64M
# Data the guest never writes (records live elsewhere), and a zero run: the copy has both.
qemu-io -f qcow2 -c 'write -q -P 0x5a 40M 3M' -c 'write -q -z 44M 1M' "$T/disk.qcow2" >/dev/null ||
	fail "qemu-io could not write the qcow2"
truncate -s 1M "$T/ctl.img"
keygen "$T/src.key"

# The VM: two QMP sockets, one for the seed (QEMU takes one client per socket), one for us.
bg_start "$T/qemu.log" qemu-system-x86_64 -name p2pvbd-seed-qmp \
	-nodefaults -no-user-config -no-reboot -machine pc,accel=tcg -smp 1 -m 128M \
	-display none -kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet p2pvbd.mode=writer p2pvbd.records=$RECORDS p2pvbd.seed=$SEED" \
	-chardev "file,id=con0,path=$T/console.log" -serial chardev:con0 \
	-qmp "unix:$T/seed.qmp,server=on,wait=off" -qmp "unix:$T/test.qmp,server=on,wait=off" \
	-drive "if=none,id=disk0,format=qcow2,file=$T/disk.qcow2" \
	-device virtio-blk-pci,drive=disk0,serial=p2pvbd-data,addr=0x4 \
	-drive "if=none,id=ctl0,format=raw,file.locking=off,file=$T/ctl.img" \
	-device virtio-blk-pci,drive=ctl0,serial=p2pvbd-ctl,addr=0x5
QEMU_PID=$BG_PID

qmp() { python3 "$VM/qmp-cmd.py" "$T/test.qmp" "$@"; }
recs() { grep -c '^P2PVBD-REC ' "$T/console.log" 2>/dev/null || true; }
# wait_recs N WHAT: wait (90 s at most) until the guest has written N records in all.
wait_recs() {
	local i
	for ((i = 0; i < 900; i++)); do
		(($(recs) >= $1)) && return 0
		kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited: $(tail -n 3 "$T/qemu.log")"
		sleep 0.1
	done
	fail "the guest wrote $(recs) records, not $1, within 90 s ($2)"
}
# no_ours: QEMU has no job and no node of ours.
no_ours() {
	local jobs nodes
	jobs=$(qmp query-block-jobs) || fail "query-block-jobs failed"
	[[ $jobs == "[]" ]] || fail "$1: block jobs left: $jobs"
	nodes=$(qmp query-named-block-nodes '{"flat": true}') || fail "query-named-block-nodes failed"
	python3 -c 'import json,sys; n=[b["node-name"] for b in json.loads(sys.argv[1])]; sys.exit(any(x.startswith("p2pvbd-") for x in n))' \
		"$nodes" || fail "$1: a p2pvbd node is left in QEMU"
}
# stop_seed WHAT: SIGTERM, then it must detach and exit 0 within 60 s.
stop_seed() {
	kill -TERM "$SEED_PID"
	wait_exit "$SEED_PID" 60 || fail "$1: the seed did not stop within 60 s of SIGTERM"
	((EXIT_STATUS == 0)) || fail "$1: the seed exited $EXIT_STATUS: $(tail -n 5 "$T/seed.log")"
}

for ((i = 0; i < 600; i++)); do
	[[ -S $T/seed.qmp && -S $T/test.qmp ]] && break
	sleep 0.1
done
wait_recs 8 "booting"
note "the guest writes on its qcow2 ($(recs) records so far); attaching"

# ---- 1. attach while the guest writes; a fetch equals the qcow2 at the freeze.
SEEDARGS=(-k "$T/src.key" --qmp "$T/seed.qmp" --drive disk0 --state-dir "$T/state"
	--ctl "$T/seed.ctl" --chunk-size 64K --volume-id "$VOLID")
start_seed "${SEEDARGS[@]}"
grep -q 'attached to drive' "$T/seed.log" || fail "the seed did not log its attach"
grep -q 'is copied (generation' "$T/seed.log" || fail "URI before the copy was READY"
jobs=$(qmp query-block-jobs) || fail "query-block-jobs failed"
python3 -c 'import json,sys; j=json.loads(sys.argv[1]); sys.exit(not (len(j)==1 and j[0]["type"]=="mirror" and j[0]["ready"] and j[0]["device"].startswith("p2pvbd-")))' \
	"$jobs" || fail "no READY mirror job of ours: $jobs"
at_ready=$(recs)
bg_start "$T/fetch.log" "$P2PVBD" fetch --no-progress --ctl "$T/fetch.ctl" "$URI" "$T/out.img"
FETCH_PID=$BG_PID
wait_recs $((at_ready + 10)) "through the seed"
qmp stop >/dev/null || fail "QMP stop failed"
expect_rc 0 freeze "$P2PVBD" ctl "$T/seed.ctl" freeze
gen=$(sed -n 's/^frozen at generation \([0-9]*\).*/\1/p' "$T/freeze.out")
[[ -n $gen ]] || fail "ctl freeze said: $(cat "$T/freeze.out")"
wait_exit "$FETCH_PID" 60 || fail "fetch did not end within 60 s of the freeze"
((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS"
qemu-img convert -U -f qcow2 -O raw "$T/disk.qcow2" "$T/ref.raw" || fail "qemu-img convert failed"
cmp -s "$T/ref.raw" "$T/out.img" ||
	fail "the fetched image differs from the qcow2 at the freeze: $(cmp "$T/ref.raw" "$T/out.img" | head -n 1)"
note "generation $gen: the fetch equals qemu-img convert of the qcow2 ($((at_ready)) records at READY, $(recs) at the freeze)"
expect_rc 0 thaw "$P2PVBD" ctl "$T/seed.ctl" thaw
qmp cont >/dev/null || fail "QMP cont failed"
n=$(recs)
wait_recs $((n + 3)) "thawed, through the seed"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed stopped after the thaw: $(tail -n 5 "$T/seed.log")"
last_gen=$("$P2PVBD" status --json "$T/seed.ctl" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["generation"])') ||
	fail "p2pvbd status --json failed"

# ---- 2. detach: the VM runs on as it was.
stop_seed "detaching"
grep -q 'detached: mirror job cancelled, nbd node deleted' "$T/seed.log" ||
	fail "the seed did not log its detach"
no_ours "after detaching"
n=$(recs)
wait_recs $((n + 3)) "after detaching"
note "detached at generation >= $last_gen; the guest writes on ($(recs) records)"

# ---- 3. restarted: above every generation; --max-dirty-rate holds the guest's writes.
mv "$T/seed.log" "$T/seed1.log"
start_seed "${SEEDARGS[@]}" --max-dirty-rate 1
g2=$(sed -n 's/.*going on at generation \([0-9]*\), above every generation.*/\1/p' "$T/seed.log")
[[ -n $g2 ]] || fail "the restarted seed did not go on above its earlier generations"
((g2 > last_gen)) || fail "restarted at generation $g2, not above $last_gen"
# Writes in flight at READY may still finish; then none: each waits for the seed's tokens.
sleep 2
held=$(recs)
sleep 3
(($(recs) <= held + 1)) ||
	fail "the guest wrote $(($(recs) - held)) records in 3 s with --max-dirty-rate 1: its writes do not wait for the seed"
kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU exited"
stop_seed "detaching with writes held"
no_ours "after detaching with writes held"
wait_recs $((held + 3)) "released by the detach"
note "restarted at generation $g2 > $last_gen; --max-dirty-rate held the guest at $held records until the detach"

# ---- 4. QEMU exits under the seed: it says so and serves on; the qcow2 is intact.
mv "$T/seed.log" "$T/seed2.log"
start_seed "${SEEDARGS[@]}"
printf 'STOP' | dd of="$T/ctl.img" conv=notrunc status=none
wait_exit "$QEMU_PID" 120 || fail "the guest did not stop and power off within 120 s"
grep -q '^P2PVBD-VERIFY OK ' "$T/console.log" ||
	fail "the guest did not verify its records: $(grep '^P2PVBD-' "$T/console.log" | tail -n 3)"
wait_for_line "$T/seed.log" 'QEMU exited' 30 "$SEED_PID" "the seed stopped when QEMU exited" \
	"the seed did not notice QEMU exit within 30 s"
kill -0 "$SEED_PID" 2>/dev/null || fail "the seed stopped when QEMU exited"
stop_seed "after QEMU exited"
grep -q 'QEMU is gone: nothing to detach' "$T/seed.log" || fail "the seed did not say QEMU was gone"
expect_rc 0 check qemu-img check "$T/disk.qcow2"
note "ok"
