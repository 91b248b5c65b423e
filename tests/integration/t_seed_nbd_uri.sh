#!/bin/bash
# SPDX-License-Identifier: ISC
# Checks: seed reads IMAGE from an NBD server given as a URI (issue 16 part 2), so that a qcow2
# is seeded without conversion.
#  1. A 256 MiB qcow2 with 6.25 MiB of data, large holes and a zeroed cluster, served read-only by
#     qemu-nbd: seed --hash-only nbd+unix:///?socket=... reads about the data (block status:
#     holes are never read), not the image; the seed's ready log says so too.
#  2. fetch of the seed's URI writes exactly `qemu-img convert -O raw` of the qcow2.
#  3. The generation record of an NBD source is DIR/nbd-HASH.p2pvbd-seed in --state-dir, keyed by
#     the URI: a restart with the same volume id finds the root it published; a second source
#     (nbdkit serving the raw copy, nbd+unix:///EXPORT?socket=...) gets its own record, and its
#     fetch is the same image.
#  4. Errors: -e with an NBD URI is refused (usage); a URI whose socket is missing, and a server
#     whose reads fail, are clear errors.
# fast
# shellcheck source=tests/integration/lib.sh
. "$(dirname "$0")/lib.sh" "$@"
command -v qemu-nbd >/dev/null || fail "qemu-nbd missing (tools/install-deps.sh installs qemu-utils)"
MIB=1048576
SIZE_MIB=256
VOLID=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
SECRET=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')

# The qcow2: random data at a few places (6 MiB in all, one piece not chunk aligned), the rest
# holes; plus 4 MiB written as zeros with qemu-io's write -z (a zero cluster, never read).
truncate -s $((SIZE_MIB * MIB)) "$T/data.raw"
for spec in 0:2 17:1 100:2 255:1; do
	dd if=/dev/urandom of="$T/data.raw" bs=1M seek="${spec%%:*}" count="${spec##*:}" \
		conv=notrunc status=none
done
# 256 KiB across a chunk boundary (at 150 MiB + 192 KiB): two chunks are read for it.
dd if=/dev/urandom of="$T/data.raw" bs=64K seek=$((150 * 16 + 3)) count=4 conv=notrunc status=none
qemu-img convert -f raw -O qcow2 "$T/data.raw" "$T/src.qcow2" ||
	fail "qemu-img convert to qcow2 failed"
qemu-io -f qcow2 -c "write -z 60M 4M" "$T/src.qcow2" >"$T/qemu-io.out" 2>&1 ||
	fail "qemu-io write -z failed: $(cat "$T/qemu-io.out")"
DATA=$((6 * MIB + 256 * 1024))
qemu-img convert -f qcow2 -O raw "$T/src.qcow2" "$T/ref.raw" || fail "qemu-img convert to raw failed"
keygen "$T/src.key"

# nbd_up NAME SOCK CMD...: start an NBD server in the foreground (log $T/NAME.log) and wait for
# its socket.
nbd_up() {
	local name=$1 sock=$2 i
	shift 2
	bg_start "$T/$name.log" "$@"
	for ((i = 0; i < 300; i++)); do
		[[ -S $sock ]] && return 0
		kill -0 "$BG_PID" 2>/dev/null || fail "$name exited: $(cat "$T/$name.log")"
		sleep 0.1
	done
	fail "$name did not make its socket $sock within 30 s"
}

# --persistent: qemu-nbd stays up across the seeds that connect one after the other.
nbd_up qemu-nbd "$T/q.sock" qemu-nbd --socket="$T/q.sock" --format=qcow2 --read-only --persistent \
	"$T/src.qcow2"
QURI="nbd+unix:///?socket=$T/q.sock"

# ---- 1. the hash reads the data, not the holes ----------------------------------------------
run_cmd hash "$P2PVBD" seed -k "$T/src.key" --hash-only --state-dir "$T/state" "$QURI"
((RC == 0)) || fail "seed --hash-only $QURI failed (rc $RC): $(tail -n 5 "$T/hash.err")"
json_get() { python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())[sys.argv[1]])' "$1" <"$T/hash.out"; }
bytes=$(json_get bytes)
read=$(json_get bytes_read)
((bytes == SIZE_MIB * MIB)) || fail "--hash-only says the image has $bytes bytes, not $((SIZE_MIB * MIB))"
# Every data byte is read; besides them only the rest of the chunks they touch (256 KiB chunks:
# the piece across a boundary costs 256 KiB more); the holes and the zero cluster never.
((read >= DATA)) || fail "read $read bytes, fewer than the $DATA bytes of data"
((read <= DATA + 256 * 1024)) || fail "read $read bytes of a qcow2 with $DATA bytes of data: holes were read"
note "hash-only: $bytes bytes, $read read"

# ---- 2. seed and fetch: the fetched image is the qcow2's raw content -------------------------
start_seed -k "$T/src.key" --state-dir "$T/state" --volume-id "$VOLID" --secret "$SECRET" "$QURI"
grep -Eq "hashed in [0-9.]+ s, 6\.[0-9] MiB read" "$T/seed.log" ||
	fail "the seed's log does not say it read about 6 MiB: $(grep 'hashed in' "$T/seed.log")"
run_cmd f1 "$P2PVBD" fetch --no-progress "$URI" "$T/f1.img"
((RC == 0)) || fail "fetch from the NBD-sourced seed failed (rc $RC): $(tail -n 5 "$T/f1.err")"
cmp "$T/ref.raw" "$T/f1.img" || fail "the fetched image differs from qemu-img convert -O raw of the qcow2"
stop_pid "$SEED_PID"

# ---- 3. the generation record, keyed by the URI ------------------------------------------------
records=("$T"/state/nbd-*.p2pvbd-seed)
((${#records[@]} == 1)) && [[ -f ${records[0]} ]] ||
	fail "expected one record nbd-*.p2pvbd-seed in --state-dir, found: $(ls "$T/state")"
grep -qF "generation record of $QURI is ${records[0]}" "$T/seed.log" || fail "the seed did not log where its record is"
start_seed -k "$T/src.key" --state-dir "$T/state" --volume-id "$VOLID" --secret "$SECRET" "$QURI"
grep -q "the image is as published at generation 0" "$T/seed.log" ||
	fail "restarted on the same source, the seed did not find the root it published"
stop_pid "$SEED_PID"

# nbdkit as a second server (the raw copy, sparse: its holes are block status holes too).
if command -v nbdkit >/dev/null; then
	nbd_up nbdkit "$T/k.sock" nbdkit -f -r -U "$T/k.sock" file "$T/ref.raw"
	KURI="nbd+unix:///disk?socket=$T/k.sock"
	start_seed -k "$T/src.key" --state-dir "$T/state" --volume-id "$VOLID" --secret "$SECRET" "$KURI"
	grep -q "no generation of it was published from here" "$T/seed.log" ||
		fail "a second NBD source shared the first one's generation record"
	(($(find "$T/state" -name 'nbd-*.p2pvbd-seed' | wc -l) == 2)) || fail "not two records: $(ls "$T/state")"
	grep -Eq "hashed in [0-9.]+ s, 6\.[0-9] MiB read" "$T/seed.log" ||
		fail "the nbdkit seed read more than the data: $(grep 'hashed in' "$T/seed.log")"
	run_cmd f2 "$P2PVBD" fetch --no-progress "$URI" "$T/f2.img"
	((RC == 0)) || fail "fetch from the nbdkit-sourced seed failed (rc $RC): $(tail -n 5 "$T/f2.err")"
	cmp "$T/ref.raw" "$T/f2.img" || fail "the image fetched through nbdkit differs"
	stop_pid "$SEED_PID"
else
	note "nbdkit not installed: the second server is skipped"
fi

# ---- 4. errors ------------------------------------------------------------------------------
expect_rc 2 export "$P2PVBD" seed -k "$T/src.key" -e "unix:$T/e.sock" "$QURI"
err_mentions export "-e needs IMAGE to be a file or block device"
expect_rc 1 nosock "$P2PVBD" seed -k "$T/src.key" --hash-only "nbd+unix:///?socket=$T/none.sock"
err_mentions nosock "cannot connect to the NBD source"
# A server whose reads fail (nbdkit's error filter): the hash stops with the error, no hang.
if command -v nbdkit >/dev/null; then
	nbd_up nbdkit-eio "$T/eio.sock" nbdkit -f -r -U "$T/eio.sock" --filter=error pattern 16M \
		error-pread=EIO error-pread-rate=100%
	expect_rc 1 eio "$P2PVBD" seed -k "$T/src.key" --hash-only "nbd+unix:///?socket=$T/eio.sock"
	err_mentions eio "reading chunk [0-9]+ at offset [0-9]+: Input/output error"
fi
note "ok"
