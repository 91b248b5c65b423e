#!/bin/bash
# SPDX-License-Identifier: ISC
# fast
# Checks `fetch --qmp SOCKET --drive ID` against a real QEMU that never runs a guest (-S: a
# virtio disk on fetch's NBD export, driven with qemu-io through HMP):
#  1. the move, for a -drive (nodes named by QEMU: the mirror way) and a -blockdev (named
#     nodes: the reopen way, the nbd node deleted after it): a write made through the export before the move (qemu-io on the export,
#     before QEMU starts: fetch cannot reach QMP yet and tries again) is in OUT; once OUT is
#     complete and QEMU is up, its drive moves onto OUT, fetch says so and exits 0 by itself;
#     QEMU has no nbd node left and its drive reads OUT through node p2pvbd-local-disk0; a
#     write after the move lands in OUT; OUT is the source image plus those two writes, and
#     its state file is gone (OUT is the VM's disk, no longer a p2pvbd output).
#  2. a drive that does not exist: fetch logs why, goes on serving the VM (a write through
#     the export lands in OUT) and does not exit.
#  3. a switch that fails half-way (another process denies writers on OUT: QEMU cannot take
#     OUT): the new node is removed again, the drive stays on the export, fetch keeps serving.
#  4. usage: --qmp without --drive or -e, and with --mirror, is refused.
# Skips (exit 0) only when qemu-system-x86_64 is missing and cannot be installed.
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"

VM=$(cd "$(dirname "$0")/../../tools/vm" && pwd)
QMPCMD=$VM/qmp-cmd.py

need_qemu_system

make_image "$T/disk.img" 8
keygen "$T/src.key"
start_seed -k "$T/src.key" --chunk-size 64K "$T/disk.img"

# ---- 4. usage (nothing is made)
expect_rc 2 use1 "$P2PVBD" fetch --qmp "$T/x.qmp" -e "unix:$T/x.sock" "$URI" "$T/x.img"
err_mentions use1 "--qmp and --drive go together"
expect_rc 2 use2 "$P2PVBD" fetch --qmp "$T/x.qmp" --drive d0 "$URI" "$T/x.img"
err_mentions use2 "--qmp needs -e"
expect_rc 2 use3 "$P2PVBD" fetch --qmp "$T/x.qmp" --drive d0 -e "unix:$T/x.sock" --mirror \
	"$URI" "$T/x.img"
err_mentions use3 "--qmp and --mirror exclude each other"
[[ ! -e $T/x.img ]] || fail "a refused fetch made its output"

# start_dst NAME DRIVE: fetch NAME.img exporting on NAME.sock with --qmp NAME.qmp --drive DRIVE.
start_dst() {
	bg_start "$T/$1.log" "$P2PVBD" fetch --no-progress -e "unix:$T/$1.sock" --ctl "$T/$1.ctl" \
		--qmp "$T/$1.qmp" --drive "$2" "$URI" "$T/$1.img"
	FETCH_PID=$BG_PID
	wait_for_line "$T/$1.log" 'volume complete and verified' 30 "$FETCH_PID" \
		"fetch $1 exited before completing" "fetch $1 did not complete within 30 s"
}
# start_qemu NAME [blockdev]: a QEMU stopped before its guest (-S), a virtio disk (device vd0)
# on NAME.sock: -drive id disk0 (QEMU names its nodes), or with "blockdev" raw node fmt0 over
# nbd node nbd0; fetch's QMP socket is NAME.qmp, the test's NAME-t.qmp.
start_qemu() {
	local disk=(-drive "if=none,id=disk0,format=raw,file=nbd:unix:$T/$1.sock"
		-device virtio-blk-pci,drive=disk0,id=vd0)
	[[ ${2:-} != blockdev ]] ||
		disk=(-blockdev "driver=nbd,node-name=nbd0,server.type=unix,server.path=$T/$1.sock"
			-blockdev driver=raw,node-name=fmt0,file=nbd0
			-device virtio-blk-pci,drive=fmt0,id=vd0)
	bg_start "$T/$1-qemu.log" qemu-system-x86_64 -M pc,accel=tcg -S -m 32 -nodefaults \
		-display none -qmp "unix:$T/$1.qmp,server=on,wait=off" \
		-qmp "unix:$T/$1-t.qmp,server=on,wait=off" "${disk[@]}"
	QEMU_PID=$BG_PID
	for ((i = 0; i < 100; i++)); do
		[[ -S $T/$1-t.qmp ]] && break
		kill -0 "$QEMU_PID" 2>/dev/null || fail "QEMU $1 exited: $(tail -n 5 "$T/$1-qemu.log")"
		sleep 0.1
	done
	[[ -S $T/$1-t.qmp ]] || fail "QEMU $1 made no QMP socket within 10 s"
}
# hmp NAME QMP CMD: a human-monitor command on QEMU's QMP socket QMP; its output in $T/NAME.out.
hmp() {
	expect_rc 0 "$1" python3 "$QMPCMD" "$2" human-monitor-command \
		"$(python3 -c 'import json,sys; print(json.dumps({"command-line": sys.argv[1]}))' "$3")"
	! grep -qiE 'error|fail' "$T/$1.out" || fail "$3: $(cat "$T/$1.out")"
}
# pattern_at FILE OFF LEN BYTE: the LEN bytes at OFF of FILE are all BYTE (hex).
pattern_at() {
	python3 - "$@" <<'PY'
import sys
f, off, n, b = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4], 16)
with open(f, "rb") as fh:
    fh.seek(off)
    d = fh.read(n)
sys.exit(0 if d == bytes([b]) * n else 1)
PY
}

# ---- 1. the move: move_case NAME DRIVE [blockdev] (the mirror way for -drive's nodes, the
# reopen way for -blockdev's).
move_case() {
	local n=$1 drive=$2
	start_dst "$n" "$drive"
	# Before QEMU is up: a write through the export (qemu-io as the NBD client).
	expect_rc 0 "$n-preio" qemu-io -f raw -c 'write -P 0xab 1M 64k' "nbd:unix:$T/$n.sock"
	wait_for_line "$T/$n.log" "QMP socket does not answer" 10 "$FETCH_PID" \
		"fetch exited while QEMU was not up: $(tail -n 3 "$T/$n.log")" \
		"fetch did not say that QMP does not answer"
	start_qemu "$n" "${3:-}"
	wait_exit "$FETCH_PID" 30 || fail "fetch did not exit after moving the drive: $(tail -n 3 "$T/$n.log")"
	((EXIT_STATUS == 0)) || fail "fetch exited $EXIT_STATUS after the move: $(tail -n 3 "$T/$n.log")"
	grep -q "QEMU's drive $drive now runs on $T/$n.img (node p2pvbd-local-$drive)" "$T/$n.log" ||
		fail "fetch did not log the move: $(tail -n 3 "$T/$n.log")"
	[[ ! -e $T/$n.img.p2pvbd-state ]] || fail "OUT's state file is left after the move"
	expect_rc 0 "$n-nodes" python3 "$QMPCMD" "$T/$n-t.qmp" query-named-block-nodes
	expect_rc 0 "$n-block" python3 "$QMPCMD" "$T/$n-t.qmp" query-block
	python3 - "$T/$n-nodes.out" "$T/$n.img" "p2pvbd-local-$drive" "$T/$n-block.out" <<'PY' ||
import json, sys
nodes, block = json.load(open(sys.argv[1])), json.load(open(sys.argv[4]))
drv = {n["node-name"]: n for n in nodes}
if any(n["drv"] == "nbd" for n in nodes):
    sys.exit("an nbd node is left: %s" % [n["node-name"] for n in nodes if n["drv"] == "nbd"])
local = drv.get(sys.argv[3])
if local is None or local["file"] != sys.argv[2]:
    sys.exit("no node %s on %s" % (sys.argv[3], sys.argv[2]))
d = [b for b in block if "/vd0/" in b.get("qdev", "")][0]
if d["inserted"]["file"] != sys.argv[2] or d["inserted"]["drv"] != "raw":
    sys.exit("vd0 reads %s (%s)" % (d["inserted"]["file"], d["inserted"]["drv"]))
PY
		fail "QEMU's nodes after the move: $(cat "$T/$n-nodes.out")"
	hmp "$n-postio" "$T/$n-t.qmp" 'qemu-io -d /machine/peripheral/vd0/virtio-backend "write -P 0xcd 2M 64k"'
	hmp "$n-readio" "$T/$n-t.qmp" 'qemu-io -d /machine/peripheral/vd0/virtio-backend "read -P 0xab 1M 64k"'
	run_cmd "$n-quit" python3 "$QMPCMD" "$T/$n-t.qmp" quit # QEMU may close before it answers
	wait_exit "$QEMU_PID" 10 || fail "QEMU did not quit"
	pattern_at "$T/$n.img" $((1 << 20)) 65536 ab || fail "the write made before the move is not in OUT"
	pattern_at "$T/$n.img" $((2 << 20)) 65536 cd || fail "the write made after the move is not in OUT"
	python3 - "$T/disk.img" "$T/$n.img" <<'PY' || fail "OUT differs from the source outside the writes"
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
M = 1 << 20
if len(a) != len(b):
    sys.exit("sizes differ")
for lo, hi in ((0, M), (M + 65536, 2 * M), (2 * M + 65536, len(a))):
    if a[lo:hi] != b[lo:hi]:
        sys.exit("differs in [%d, %d)" % (lo, hi))
PY
	note "moved ($drive${3:+, $3}): fetch exited 0, QEMU on OUT, both writes in OUT"
}
move_case a disk0
move_case a2 vd0 blockdev
grep -q "moving QEMU's drive disk0 (raw node #block[0-9]*, .*) onto .*: the mirror way" "$T/a.log" ||
	fail "the -drive case did not take the mirror way"
grep -q "moving QEMU's drive vd0 (raw node fmt0, .*) onto .*: the reopen way" "$T/a2.log" ||
	fail "the -blockdev case did not take the reopen way"

# ---- 2. no such drive: logged, the VM stays on the export, fetch keeps serving.
start_dst b nosuch
start_qemu b
wait_for_line "$T/b.log" "cannot move QEMU's drive nosuch" 30 "$FETCH_PID" \
	"fetch exited after a failed move: $(tail -n 3 "$T/b.log")" "fetch logged no failed move"
grep -q "no drive, device or node named nosuch (its drives: disk0)" "$T/b.log" ||
	fail "the failure does not say why: $(tail -n 3 "$T/b.log")"
hmp bio "$T/b-t.qmp" 'qemu-io -d /machine/peripheral/vd0/virtio-backend "write -P 0xee 3M 64k"'
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited after the failed move"
stop_pid "$FETCH_PID"
pattern_at "$T/b.img" $((3 << 20)) 65536 ee || fail "the VM's write after the failed move is not in OUT"
stop_pid "$QEMU_PID"
note "no such drive: logged, fetch kept serving"

# ---- 3. the switch fails half-way: another process denies writers on OUT (QEMU's lock byte
# 201, "nobody else may write"), so QEMU cannot take OUT over.
start_dst c vd0
bg_start "$T/locker.log" python3 -c '
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDONLY)
fcntl.fcntl(fd, 37, struct.pack("hhqqi", fcntl.F_RDLCK, os.SEEK_SET, 201, 1, 0))  # F_OFD_SETLK
print("locked", flush=True)
time.sleep(120)' "$T/c.img"
LOCKER_PID=$BG_PID
wait_for_line "$T/locker.log" '^locked' 10 "$LOCKER_PID" "the locker exited" "the locker did not lock"
start_qemu c
wait_for_line "$T/c.log" "could not move QEMU's drive vd0" 30 "$FETCH_PID" \
	"fetch exited after a failed switch: $(tail -n 3 "$T/c.log")" "fetch logged no failed switch"
expect_rc 0 cnodes python3 "$QMPCMD" "$T/c-t.qmp" query-named-block-nodes
python3 - "$T/cnodes.out" <<'PY' || fail "QEMU's nodes after the failed switch: $(cat "$T/cnodes.out")"
import json, sys
nodes = json.loads(open(sys.argv[1]).read())
if not any(n["drv"] == "nbd" for n in nodes):
    sys.exit("no nbd node: the drive left the export")
if any(n["node-name"].startswith("p2pvbd-local") for n in nodes):
    sys.exit("the new node was not removed")
PY
hmp cio "$T/c-t.qmp" 'qemu-io -d /machine/peripheral/vd0/virtio-backend "write -P 0x77 4M 64k"'
kill -0 "$FETCH_PID" 2>/dev/null || fail "fetch exited after the failed switch"
stop_pid "$FETCH_PID"
pattern_at "$T/c.img" $((4 << 20)) 65536 77 || fail "the VM's write after the failed switch is not in OUT"
note "failed switch: the VM stayed on the export, fetch kept serving"
note "ok"
